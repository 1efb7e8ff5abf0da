"""Resolve what one training run works on: dataset, plans, configuration, labels, fold cases, model folder.

Model folder layout: ``results/<Dataset>/AutoSegNet__<plans_name>__<configuration>/`` holding copies of
``plans.json``, ``dataset.json`` and ``fingerprint.json``, and one ``fold_<k>/`` (or ``fold_all/``) per fold, which
holds :data:`FOLD_LOCK_FILE` while a training runs on it.

A cascade stage (``3d_cascade_fullres``) also reads its low-resolution stage's cross-validation predictions and
starts only when they exist for all its cases; a low-resolution fold writes them for its validation cases (see
:mod:`AutoSegNetLib.training.cascade`).

Training only starts on preprocessed data that a finished preprocessing run recorded as complete and that still
matches the raw dataset and the plans (:func:`~AutoSegNetLib.preprocessing.manifest.require_up_to_date`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.dataset.raw import RawDataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.labels import cascade_label_values
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans
from AutoSegNetLib.preprocessing.incremental import preprocessing_hash
from AutoSegNetLib.preprocessing.manifest import require_up_to_date
from AutoSegNetLib.preprocessing.storage import PreprocessedDataset
from AutoSegNetLib.training.cascade import (
    NextStage,
    PreviousStage,
    PreviousStageCases,
    require_stage_predictions,
    stage_predictions_folder,
)
from AutoSegNetLib.training.sampling import CaseSource
from AutoSegNetLib.training.splits import cases_for_fold, load_or_create_splits
from AutoSegNetLib.utils.atomic import atomic_path, read_json
from AutoSegNetLib.utils.locks import FileLock
from AutoSegNetLib.workspace import Workspace

#: Lock file in a fold folder, held by the training of that fold (see :mod:`AutoSegNetLib.utils.locks`).
FOLD_LOCK_FILE = ".training.lock"


@dataclass(frozen=True)
class LabelSetup:
    """What the network predicts: foreground class (or region) names in output order, the label values of
    each region (None for softmax classes), the ignore label and the number of output channels."""

    names: tuple[str, ...]
    regions: tuple[tuple[int, ...], ...] | None
    ignore_label: int | None
    num_heads: int

    @classmethod
    def from_dataset_json(cls, dataset_json: DatasetJson) -> LabelSetup:
        foreground = dataset_json.foreground_labels
        if dataset_json.has_regions:
            regions = tuple(tuple(v) if isinstance(v, list) else (v,) for v in foreground.values())
        else:
            regions = None
            foreground = dict(sorted(foreground.items(), key=lambda kv: kv[1]))
        return cls(tuple(foreground), regions, dataset_json.ignore_label, dataset_json.num_segmentation_heads)


@dataclass
class FoldSetup:
    """The fixed inputs and output folders of one training run; ``previous_stage`` for a cascade stage,
    ``next_stage`` for a low-resolution fold whose validation feeds one."""

    dataset_name: str
    configuration: str
    fold: str
    plans: Plans
    plan: ConfigurationPlan
    dataset_json: DatasetJson
    labels: LabelSetup
    preprocessed: PreprocessedDataset
    train_cases: list[str]
    val_cases: list[str]
    model_folder: Path
    fold_folder: Path
    previous_stage: PreviousStage | None = None
    next_stage: NextStage | None = None

    @property
    def num_input_channels(self) -> int:
        """Image channels, plus one per one-hot label of the previous stage for a cascade stage."""
        extra = len(self.previous_stage.label_values) if self.previous_stage is not None else 0
        return self.dataset_json.num_channels + extra

    def case_source(self) -> CaseSource:
        """The preprocessed cases; for a cascade stage with the lowres prediction as a second label channel."""
        if self.previous_stage is None:
            return self.preprocessed
        return PreviousStageCases(self.preprocessed, self.previous_stage.predictions)


def model_folder_path(workspace: Workspace, dataset_name: str, plans_name: str, configuration: str) -> Path:
    return workspace.results / dataset_name / f"AutoSegNet__{plans_name}__{configuration}"


def fold_folder_name(fold: int | str) -> str:
    return "fold_all" if str(fold) == "all" else f"fold_{int(fold)}"


def prepare_fold(workspace: Workspace, dataset: str, configuration: str, fold: int | str,
                 write_splits: bool = True) -> FoldSetup:
    """Read plans, dataset.json and the preprocessed cases; pick the fold's cases (writing the default splits
    file when there is none and ``write_splits``)."""
    name = workspace.resolve_dataset(dataset)
    pre = workspace.preprocessed / name
    plans_path = pre / "plans.json"
    if not plans_path.is_file():
        raise AutoSegNetError(f"No plans at {plans_path}. Run `autosegnet plan {dataset}` (or plan-and-preprocess).")
    plans = Plans.load(plans_path)
    plan = plans.configuration(configuration)
    dataset_json = DatasetJson.load(_dataset_json_path(workspace, name))
    preprocessed = PreprocessedDataset(pre / plan.data_identifier)
    raw = RawDataset.open(workspace.raw / name) if (workspace.raw / name / "dataset.json").is_file() else None
    settings = preprocessing_hash(plans, plan, raw.dataset_json if raw is not None else dataset_json)
    require_up_to_date(preprocessed, raw, settings, f"autosegnet preprocess {dataset} -c {configuration}")
    cases = preprocessed.case_names
    if not cases:
        raise AutoSegNetError(f"No preprocessed cases in {preprocessed.folder}. Run `autosegnet preprocess` first.")
    fold_key = "all" if str(fold) == "all" else str(int(fold))
    splits = None if fold_key == "all" else load_or_create_splits(pre, cases, write=write_splits)
    train_cases, val_cases = cases_for_fold(splits or [], fold_key, cases)
    model_folder = model_folder_path(workspace, name, plans.plans_name, configuration)
    previous = _previous_stage(workspace, name, plans, plan, dataset_json)
    if previous is not None:
        cv_splits = splits if splits is not None else load_or_create_splits(pre, cases, write=False)
        require_stage_predictions(previous, sorted(set(train_cases) | set(val_cases)), cv_splits, name,
                                  configuration, fold_key)
    return FoldSetup(name, configuration, fold_key, plans, plan, dataset_json,
                     LabelSetup.from_dataset_json(dataset_json), preprocessed, train_cases, val_cases,
                     model_folder, model_folder / fold_folder_name(fold_key), previous,
                     _next_stage(pre, plans, plan, model_folder, fold_key))


def _previous_stage(workspace: Workspace, dataset_name: str, plans: Plans, plan: ConfigurationPlan,
                    dataset_json: DatasetJson) -> PreviousStage | None:
    """The low-resolution stage a cascade stage reads (None for other configurations)."""
    if plan.previous_stage is None:
        return None
    if plan.previous_stage not in plans.configurations:
        raise AutoSegNetError(
            f"Configuration {plan.name!r} is a cascade stage after {plan.previous_stage!r}, which is not in the plans "
            f"of {dataset_name} ({', '.join(plans.configurations)}). Plan again with both "
            f"(`autosegnet plan {dataset_name} -c {plan.previous_stage} {plan.name}`)."
        )
    folder = model_folder_path(workspace, dataset_name, plans.plans_name, plan.previous_stage)
    return PreviousStage(plan.previous_stage, folder, stage_predictions_folder(folder, plan.name),
                         tuple(cascade_label_values(dataset_json)))


def _next_stage(preprocessed_dataset: Path, plans: Plans, plan: ConfigurationPlan, model_folder: Path,
                fold: str) -> NextStage | None:
    """Where this fold's validation writes the inputs of the cascade stage after it (None: no such stage in the
    plans, or fold ``all``, whose predictions of its own training cases must not feed a cascade)."""
    if plan.next_stage is None or plan.next_stage not in plans.configurations or fold == "all":
        return None
    stage = plans.configuration(plan.next_stage)
    return NextStage(stage.name, stage, preprocessed_dataset / stage.data_identifier,
                     stage_predictions_folder(model_folder, stage.name))


def fold_lock(setup: FoldSetup) -> FileLock:
    """The lock that keeps a second training off this fold (it would mix checkpoints, logs and status)."""
    return FileLock(
        setup.fold_folder / FOLD_LOCK_FILE, f"Training of {setup.dataset_name} {setup.configuration} fold {setup.fold}",
        f"Wait for it to finish, or stop it (create {setup.fold_folder / 'stop'}: it saves checkpoint_latest.pth and "
        "ends; `--continue` resumes), then run this command again. Two trainings of one fold would overwrite each "
        "other's checkpoints and logs.",
    )


def populate_model_folder(setup: FoldSetup, workspace: Workspace) -> None:
    """Copy plans.json, dataset.json and fingerprint.json (if present) into the model folder.

    An existing ``plans.json`` with different content means the other folds were trained on other plans:
    that is an error rather than a silent overwrite.
    """
    pre = workspace.preprocessed / setup.dataset_name
    setup.fold_folder.mkdir(parents=True, exist_ok=True)
    target_plans = setup.model_folder / "plans.json"
    if target_plans.is_file() and read_json(target_plans) != read_json(pre / "plans.json"):
        raise AutoSegNetError(
            f"{target_plans} differs from {pre / 'plans.json'}: this model folder was trained with other plans. "
            "Move the old model folder away (or re-plan under another plans name) before training."
        )
    sources = {"plans.json": pre / "plans.json", "dataset.json": _dataset_json_path(workspace, setup.dataset_name),
               "fingerprint.json": pre / "fingerprint.json"}
    for target_name, source in sources.items():
        if source.is_file():
            with atomic_path(setup.model_folder / target_name) as tmp:
                shutil.copyfile(source, tmp)


def _dataset_json_path(workspace: Workspace, dataset_name: str) -> Path:
    for candidate in (workspace.preprocessed / dataset_name / "dataset.json",
                      workspace.raw / dataset_name / "dataset.json"):
        if candidate.is_file():
            return candidate
    raise AutoSegNetError(
        f"No dataset.json for {dataset_name} in {workspace.preprocessed / dataset_name} or "
        f"{workspace.raw / dataset_name}. Preprocess the dataset first."
    )
