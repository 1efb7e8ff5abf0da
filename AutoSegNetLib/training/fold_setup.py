"""Resolve what one training run works on: dataset, plans, configuration, labels, fold cases, model folder.

Model folder layout (:mod:`AutoSegNetLib.layout`): ``results/<Dataset>/AutoSegNet__<plans_name>__<configuration>/``
holding copies of ``plans.json`` (with the patch the folds were trained with, see :func:`populate_model_folder`),
``dataset.json`` and ``fingerprint.json``, and one ``fold_<k>/`` (or
``fold_all/``) per fold, which holds :data:`~AutoSegNetLib.layout.FOLD_LOCK_FILE` while a training runs on it.

A cascade stage (``3d_cascade_fullres``) also reads its low-resolution stage's cross-validation predictions and
starts only when they exist for all its cases; a low-resolution fold writes them for its validation cases (see
:mod:`AutoSegNetLib.training.cascade`).

Training only starts on preprocessed data that a finished preprocessing run recorded as complete and that still
matches the raw dataset and the plans (:func:`~AutoSegNetLib.preprocessing.manifest.require_up_to_date`).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.dataset.raw import RawDataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.labels import cascade_label_values
from AutoSegNetLib.layout import (
    ALL_FOLDS,
    DATASET_JSON_FILE,
    FINGERPRINT_FILE,
    FOLD_LOCK_FILE,
    PLANS_FILE,
    checkpoint_file_name,
    fold_folder_name,
    fold_key,
    model_folder_path,
)
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
from AutoSegNetLib.utils.atomic import atomic_path, read_json, write_json
from AutoSegNetLib.utils.locks import FileLock
from AutoSegNetLib.utils.stop import STOP_FILE_NAME
from AutoSegNetLib.workspace import Workspace


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


def prepare_fold(workspace: Workspace, dataset: str, configuration: str, fold: int | str,
                 write_splits: bool = True) -> FoldSetup:
    """Read plans, dataset.json and the preprocessed cases; pick the fold's cases (writing the default splits
    file when there is none and ``write_splits``)."""
    name = workspace.resolve_dataset(dataset)
    pre = workspace.preprocessed / name
    plans_path = pre / PLANS_FILE
    if not plans_path.is_file():
        raise AutoSegNetError(f"No plans at {plans_path}. Run `autosegnet plan {dataset}` (or plan-and-preprocess).")
    plans = Plans.load(plans_path)
    plan = plans.configuration(configuration)
    dataset_json = DatasetJson.load(_dataset_json_path(workspace, name))
    preprocessed = PreprocessedDataset(pre / plan.data_identifier)
    raw = RawDataset.open(workspace.raw / name) if (workspace.raw / name / DATASET_JSON_FILE).is_file() else None
    settings = preprocessing_hash(plans, plan, raw.dataset_json if raw is not None else dataset_json)
    require_up_to_date(preprocessed, raw, settings, f"autosegnet preprocess {dataset} -c {configuration}")
    cases = preprocessed.case_names
    if not cases:
        raise AutoSegNetError(f"No preprocessed cases in {preprocessed.folder}. Run `autosegnet preprocess` first.")
    key = fold_key(fold)
    splits = None if key == ALL_FOLDS else load_or_create_splits(pre, cases, write=write_splits)
    train_cases, val_cases = cases_for_fold(splits or [], key, cases)
    model_folder = model_folder_path(workspace, name, plans.plans_name, configuration)
    previous = _previous_stage(workspace, name, plans, plan, dataset_json)
    if previous is not None:
        cv_splits = splits if splits is not None else load_or_create_splits(pre, cases, write=False)
        require_stage_predictions(previous, sorted(set(train_cases) | set(val_cases)), cv_splits, name,
                                  configuration, key)
    return FoldSetup(name, configuration, key, plans, plan, dataset_json,
                     LabelSetup.from_dataset_json(dataset_json), preprocessed, train_cases, val_cases,
                     model_folder, model_folder / fold_folder_name(key), previous,
                     _next_stage(pre, plans, plan, model_folder, key))


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
    if plan.next_stage is None or plan.next_stage not in plans.configurations or fold == ALL_FOLDS:
        return None
    stage = plans.configuration(plan.next_stage)
    return NextStage(stage.name, stage, preprocessed_dataset / stage.data_identifier,
                     stage_predictions_folder(model_folder, stage.name))


def fold_lock(setup: FoldSetup) -> FileLock:
    """The lock that keeps a second training off this fold (it would mix checkpoints, logs and status)."""
    return FileLock(
        setup.fold_folder / FOLD_LOCK_FILE, f"Training of {setup.dataset_name} {setup.configuration} fold {setup.fold}",
        f"Wait for it to finish, or stop it (create {setup.fold_folder / STOP_FILE_NAME}: it saves "
        f"{checkpoint_file_name('latest')} and "
        "ends; `--continue` resumes), then run this command again. Two trainings of one fold would overwrite each "
        "other's checkpoints and logs.",
    )


def populate_model_folder(setup: FoldSetup, workspace: Workspace, patch_size: Sequence[int] | None = None) -> None:
    """Copy plans.json, dataset.json and fingerprint.json (if present) into the model folder.

    ``patch_size`` is the patch this run trains with: one that is not the plan's (``train --patch-size``) is
    recorded as the configuration's patch in the model folder's plans.json (:func:`trained_plans`), which
    validation and prediction tile with. None (validation only) keeps the patch the model folder records.

    An existing ``plans.json`` with different content means the other folds were trained on other plans (or with
    another patch): that is an error rather than a silent overwrite.
    """
    pre = workspace.preprocessed / setup.dataset_name
    setup.fold_folder.mkdir(parents=True, exist_ok=True)
    target_plans = setup.model_folder / PLANS_FILE
    recorded = read_json(target_plans) if target_plans.is_file() else None
    if patch_size is None and recorded is not None:
        patch_size = recorded.get("configurations", {}).get(setup.configuration, {}).get("patch_size")
    planned = read_json(pre / PLANS_FILE)
    plans = trained_plans(planned, setup.configuration, patch_size)
    if recorded is not None and recorded != plans:
        raise _other_plans_error(setup, recorded, planned, plans, target_plans, pre / PLANS_FILE)
    sources = {PLANS_FILE: pre / PLANS_FILE, DATASET_JSON_FILE: _dataset_json_path(workspace, setup.dataset_name),
               FINGERPRINT_FILE: pre / FINGERPRINT_FILE}
    if plans is not planned:
        write_json(target_plans, plans)
        del sources[PLANS_FILE]
    for target_name, source in sources.items():
        if source.is_file():
            with atomic_path(setup.model_folder / target_name) as tmp:
                shutil.copyfile(source, tmp)


def trained_plans(plans: dict[str, Any], configuration: str, patch_size: Sequence[int] | None) -> dict[str, Any]:
    """``plans`` (plans.json's content) with ``configuration``'s patch replaced by ``patch_size`` when that is
    another one (else ``plans`` itself): the model folder's plans.json, naming the patch its networks were
    trained with."""
    planned = plans["configurations"][configuration]
    if patch_size is None or [int(p) for p in patch_size] == planned["patch_size"]:
        return plans
    changed = {**planned, "patch_size": [int(p) for p in patch_size]}
    return {**plans, "configurations": {**plans["configurations"], configuration: changed}}


def _other_plans_error(setup: FoldSetup, recorded: dict[str, Any], planned: dict[str, Any], plans: dict[str, Any],
                       target: Path, source: Path) -> AutoSegNetError:
    """The error for a model folder whose plans.json is not what this run would write."""
    patch = recorded.get("configurations", {}).get(setup.configuration, {}).get("patch_size")
    wanted = plans["configurations"][setup.configuration]["patch_size"]
    if patch is not None and trained_plans(planned, setup.configuration, patch) == recorded:
        return AutoSegNetError(
            f"{target} records that this model folder's folds were trained with patch size {patch}, but this run "
            f"trains {setup.configuration} with {wanted}: the folds of one model must share their patch. Train "
            f"with --patch-size {' '.join(str(p) for p in patch)}, or move the old model folder away first."
        )
    return AutoSegNetError(
        f"{target} differs from {source}: this model folder was trained with other plans. "
        "Move the old model folder away (or re-plan under another plans name) before training."
    )


def _dataset_json_path(workspace: Workspace, dataset_name: str) -> Path:
    for candidate in (workspace.preprocessed / dataset_name / DATASET_JSON_FILE,
                      workspace.raw / dataset_name / DATASET_JSON_FILE):
        if candidate.is_file():
            return candidate
    raise AutoSegNetError(
        f"No dataset.json for {dataset_name} in {workspace.preprocessed / dataset_name} or "
        f"{workspace.raw / dataset_name}. Preprocess the dataset first."
    )
