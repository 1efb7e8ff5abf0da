"""``move-plans``: give a target dataset the plans of a source dataset, so that a model trained on the source (or
downloaded) can be fine-tuned on the target with ``train --pretrained`` -- nnU-Net v2's
``nnUNetv2_move_plans_between_datasets``.

As in nnU-Net, everything the plans hold is kept: network topology, patch and batch size, target spacing,
normalisation schemes and the source's foreground intensity properties (CT clipping values, mean, std: the
pretrained weights expect inputs normalised as the source's were). Changed are:

- ``dataset_name``: the target's;
- ``plans_name``: ``-o`` (default ``<source plans name>FromDatasetXXX``, the source's number), so that the target's
  model folders (``AutoSegNet__<plans>__<configuration>``) stay apart from those of its own plans;
- each configuration's ``data_identifier``: the source plans name at its start is replaced by the new one (else
  the new one is put in front), so the preprocessed data stays apart from the target's own;
- ``image_reader_writer``: the reader for the target's files (file ending / ``overwrite_image_reader_writer``).

The source is a dataset (its ``preprocessed/<dataset>/plans.json``, else the ``plans.json`` of its installed model
folders in ``results/<dataset>/``, e.g. a downloaded model) or a path to a ``plans.json`` or to a folder holding one.
The plans are written to ``preprocessed/<target>/plans.json``, the file ``preprocess`` and ``train`` read; plans
of another name found there are kept as ``preprocessed/<target>/<their plans name>.json`` (``autosegnet plan``
writes the target's own plans again). The target must have the same number of input channels.
"""

from __future__ import annotations

import copy
import logging
import re
import shutil
from pathlib import Path

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.layout import MODEL_FOLDER_SEPARATOR, PLANS_FILE, model_folder_name
from AutoSegNetLib.planning.plans import Plans
from AutoSegNetLib.utils.atomic import atomic_path
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)

_PLANS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
_DATASET_NUMBER = re.compile(r"^Dataset(\d{3})_")


def move_plans(workspace: Workspace, source: str | Path, target: str | int, source_plans: str | None = None,
               target_plans: str | None = None, force: bool = False) -> Path:
    """Write the plans of ``source`` (dataset or path; ``source_plans``: which plans name, when it has several) as
    ``target``'s ``plans.json`` under the plans name ``target_plans``; returns the written file.

    ``force`` replaces different plans of the same name at the target (e.g. from an earlier move).
    """
    plans, found_at = find_source_plans(workspace, source, source_plans)
    target_name = workspace.resolve_dataset(target)
    dataset_json = _target_dataset_json(workspace, target_name)
    if plans.dataset_name == target_name:
        raise AutoSegNetError(f"The plans at {found_at} are {target_name}'s own; name another dataset as source.")
    check_channels(plans, dataset_json, found_at, target_name)
    moved = moved_plans(plans, target_name, dataset_json, target_plans or default_plans_name(plans))
    written = write_moved_plans(workspace, moved, force)
    log.info("Plans %s of %s (%s) moved to %s as %s: configurations %s. Next: `autosegnet preprocess %s`, then "
             "`autosegnet train %s CONFIGURATION FOLD --pretrained <checkpoint of the source model>`.",
             plans.plans_name, plans.dataset_name, found_at, written, moved.plans_name,
             ", ".join(moved.configurations), target_name, target_name)
    return written


def default_plans_name(plans: Plans) -> str:
    """``<plans name>FromDatasetXXX`` (XXX: the source dataset's number), as nnU-Net's docs suggest naming them."""
    match = _DATASET_NUMBER.match(plans.dataset_name)
    return f"{plans.plans_name}From{'Dataset' + match.group(1) if match else plans.dataset_name}"


def moved_plans(plans: Plans, target_name: str, dataset_json: DatasetJson, plans_name: str) -> Plans:
    """A copy of ``plans`` for ``target_name``: new dataset name, plans name, data identifiers and reader."""
    if not _PLANS_NAME.match(plans_name) or MODEL_FOLDER_SEPARATOR in plans_name:
        raise AutoSegNetError(
            f"Plans name {plans_name!r} cannot name a folder: use letters, digits, '-', '.' and single '_'."
        )
    moved = copy.deepcopy(plans)
    moved.dataset_name, moved.plans_name = target_name, plans_name
    moved.image_reader_writer = io_for(dataset_json.file_ending, dataset_json.overwrite_image_reader_writer).name
    for conf in moved.configurations.values():
        old = conf.data_identifier
        tail = old[len(plans.plans_name):] if old.startswith(plans.plans_name) else f"_{old}"
        conf.data_identifier = f"{plans_name}{tail}"
    return Plans.from_dict(moved.to_dict(), f"plans moved to {target_name}")


def check_channels(plans: Plans, dataset_json: DatasetJson, found_at: Path, target_name: str) -> None:
    """The target has as many input channels as every configuration of ``plans`` normalises."""
    for conf in plans.configurations.values():
        if len(conf.normalization_schemes) != dataset_json.num_channels:
            raise AutoSegNetError(
                f"The plans at {found_at} are for {len(conf.normalization_schemes)} input channel(s) "
                f"({', '.join(conf.normalization_schemes)} in {conf.name}), but {target_name} has "
                f"{dataset_json.num_channels} ({dataset_json.channel_names}); a pretrained model can only be "
                "fine-tuned on data with the same channels."
            )


# ----- finding the source's plans ------------------------------------------------------------------------------------
def find_source_plans(workspace: Workspace, source: str | Path, plans_name: str | None = None) -> tuple[Plans, Path]:
    """``(plans, where they were found)`` for a dataset of ``workspace`` or a path (see the module docstring)."""
    path = Path(source).expanduser()
    if (path.is_file() and path.suffix == ".json") or (path / PLANS_FILE).is_file():
        found = path if path.is_file() else path / PLANS_FILE
        return _with_name(Plans.load(found), plans_name, found), found
    name = workspace.resolve_dataset(source)
    candidates = _candidates(workspace, name, plans_name)
    if not candidates:
        raise _no_plans(workspace, name, plans_name)
    names = sorted({plans.plans_name for plans, _ in candidates})
    if len(names) > 1:
        raise AutoSegNetError(f"{name} has plans of several names ({', '.join(names)}); choose one with -p NAME.")
    preprocessed = [c for c in candidates if c[1].parent.parent == workspace.preprocessed]
    return preprocessed[0] if preprocessed else _merged(candidates, name)


def _candidates(workspace: Workspace, name: str, plans_name: str | None) -> list[tuple[Plans, Path]]:
    """Readable plans of ``name`` (preprocessed first, then model folders) of ``plans_name`` if given."""
    paths = [workspace.preprocessed / name / PLANS_FILE]
    if plans_name:
        paths.append(workspace.preprocessed / name / f"{plans_name}.json")
    paths += sorted((workspace.results / name).glob(f"{model_folder_name('*', '*')}/{PLANS_FILE}"))
    found = []
    for path in dict.fromkeys(paths):
        if path.is_file():
            plans = Plans.load(path)
            if plans_name is None or plans.plans_name == plans_name:
                found.append((plans, path))
    return found


def _merged(candidates: list[tuple[Plans, Path]], name: str) -> tuple[Plans, Path]:
    """One plans object from the model folders' plans (each imported nnU-Net model holds one configuration)."""
    merged, first = copy.deepcopy(candidates[0][0]), candidates[0][1]
    shared = {k: v for k, v in merged.to_dict().items() if k != "configurations"}
    for plans, path in candidates[1:]:
        if {k: v for k, v in plans.to_dict().items() if k != "configurations"} != shared:
            raise AutoSegNetError(f"The plans of {name}'s model folders differ ({first} and {path}); pass the "
                                  "plans.json to move as SOURCE.")
        for conf_name, conf in plans.configurations.items():
            if merged.configurations.setdefault(conf_name, conf) != conf:
                raise AutoSegNetError(f"{first} and {path} plan {conf_name} differently; pass the plans.json to move "
                                      "as SOURCE.")
    return merged, first.parent


def _with_name(plans: Plans, plans_name: str | None, path: Path) -> Plans:
    if plans_name is not None and plans.plans_name != plans_name:
        raise AutoSegNetError(f"{path} holds plans {plans.plans_name!r}, not {plans_name!r}; drop -p or fix it.")
    return plans


def _no_plans(workspace: Workspace, name: str, plans_name: str | None) -> AutoSegNetError:
    which = f" named {plans_name!r}" if plans_name else ""
    return AutoSegNetError(
        f"No plans{which} for {name}: neither {workspace.preprocessed / name / PLANS_FILE} nor a model folder in "
        f"{workspace.results / name} has them. Plan the source dataset (`autosegnet plan {name}`), install its model "
        "(`autosegnet install-model` / `download-model`), or pass the path of a plans.json as SOURCE."
    )


# ----- the target ---------------------------------------------------------------------------------------------------
def _target_dataset_json(workspace: Workspace, name: str) -> DatasetJson:
    path = workspace.raw / name / "dataset.json"
    if not path.is_file():
        raise AutoSegNetError(
            f"{path} is missing: the target of move-plans must be a raw dataset of this workspace (its images are "
            "preprocessed with the moved plans). Create it with `autosegnet convert` first."
        )
    return DatasetJson.load(path)


def write_moved_plans(workspace: Workspace, moved: Plans, force: bool) -> Path:
    """Save ``moved`` as the target's ``plans.json`` (plans of another name there are kept as ``<name>.json``) and
    copy the raw dataset.json beside it, as ``autosegnet plan`` does."""
    folder = workspace.preprocessed / moved.dataset_name
    target = folder / PLANS_FILE
    if target.is_file():
        existing = _readable(target)
        if existing is not None and existing.to_dict() == moved.to_dict():
            log.info("%s holds these plans already.", target)
            return target
        if existing is not None and existing.plans_name != moved.plans_name:
            _keep_aside(target, folder / f"{existing.plans_name}.json", force)
        elif not force:
            raise AutoSegNetError(
                f"{target} already holds other plans named {moved.plans_name!r} (an earlier move-plans?). Pass "
                "--force to replace them, or choose another name with -o."
            )
    moved.save(target)
    with atomic_path(folder / "dataset.json", suffix=".json") as tmp:
        shutil.copyfile(workspace.raw / moved.dataset_name / "dataset.json", tmp)
    return target


def _readable(path: Path) -> Plans | None:
    try:
        return Plans.load(path)
    except AutoSegNetError as error:
        log.warning("%s could not be read (%s); it is replaced.", path, error)
        return None


def _keep_aside(current: Path, aside: Path, force: bool) -> None:
    """Copy ``current`` to ``aside`` unless an other file is there already (then only with ``force``)."""
    if aside.is_file() and aside.read_bytes() != current.read_bytes() and not force:
        raise AutoSegNetError(
            f"{current} (plans {aside.stem!r}) would be kept as {aside}, which exists with other content. Move it "
            "away or pass --force to overwrite it."
        )
    with atomic_path(aside, suffix=".json") as tmp:
        shutil.copyfile(current, tmp)
    log.info("The plans that were in %s are kept as %s.", current, aside)
