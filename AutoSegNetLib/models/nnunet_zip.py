"""Install a zip written by nnU-Net v2's ``nnUNetv2_export_model_to_zip``: unpack it safely, then import each model
folder through :func:`~AutoSegNetLib.models.nnunet_import.import_nnunet_model`.

nnU-Net's export holds paths relative to ``nnUNet_results`` and no manifest::

    DatasetXXX_Name/<Trainer>__<Plans>__<configuration>/plans.json, dataset.json, dataset_fingerprint.json
    DatasetXXX_Name/<Trainer>__<Plans>__<configuration>/fold_<k>/checkpoint_final.pth, progress.png, debug.json,
        validation/summary.json
    DatasetXXX_Name/<Trainer>__<Plans>__<configuration>/crossval_results_folds_<...>/summary.json,
        postprocessing.pkl, postprocessing.json
    DatasetXXX_Name/ensembles/..., inference_information.json / .txt

Only ``plans.json``, ``dataset.json`` and ``fold_<k>/checkpoint_final.pth`` (``checkpoint_best.pth`` for a model
exported with that one only) are unpacked; nothing else is read (``postprocessing.pkl`` is a pickle and is never
opened). The same checks as for our own zips apply to the whole zip (unsafe paths, links, duplicates) and to what
is unpacked (``--max-size``, compression ratio, sizes that lie, free space). Everything is unpacked and converted
in a hidden staging folder of the dataset's results folder and renamed into place at the end: all models of the
zip are installed, or none.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import zipfile
from collections import defaultdict
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import (
    CHECKPOINT_SUFFIX,
    DATASET_JSON_FILE,
    FOLD_FOLDER_GLOB,
    FOLD_FOLDER_PREFIX,
    PLANS_FILE,
    REQUIRED_MODEL_FILES,
    checkpoint_file_name,
    model_folder_name,
    split_model_folder_name,
)
from AutoSegNetLib.models.install import (
    DEFAULT_MAX_SIZE,
    check_free_space,
    check_member_sizes,
    checked_members,
    extract_members,
    move_folders_into_place,
    staging_folder,
)
from AutoSegNetLib.models.nnunet_import import import_nnunet_model
from AutoSegNetLib.utils.atomic import read_json
from AutoSegNetLib.utils.stop import StopRequest
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)

#: The checkpoint kinds an nnU-Net export may hold, the preferred first.
_KINDS = ("final", "best")
#: A file of an nnU-Net export that the import reads: ``(dataset, model folder, file inside it)``.
_NEEDED = re.compile(
    r"^(?P<dataset>Dataset\d{3}_[A-Za-z0-9_\-]+)/(?P<model>[^/_][^/]*__[^/]+__[^/]+)/"
    rf"(?P<file>{re.escape(PLANS_FILE)}|{re.escape(DATASET_JSON_FILE)}|{re.escape(FOLD_FOLDER_PREFIX)}[^/]+/"
    rf"(?:{'|'.join(re.escape(checkpoint_file_name(kind)) for kind in _KINDS)}))$"
)
_LAYOUT = (f"DatasetXXX_Name/<Trainer>__<Plans>__<configuration>/"
           f"{{{PLANS_FILE}, {DATASET_JSON_FILE}, {FOLD_FOLDER_PREFIX}<k>/{checkpoint_file_name('final')}}}")


def is_nnunet_export(names: list[str]) -> bool:
    """Whether zip entries ``names`` look like an ``nnUNetv2_export_model_to_zip`` export (a model's plans.json)."""
    return any(match.group("file") == PLANS_FILE for match in map(_NEEDED.match, names) if match)


def install_nnunet_zip(zip_path: str | Path, workspace: Workspace, force: bool = False,
                       trust_checkpoints: bool = False, stop: StopRequest | None = None,
                       max_size: int = DEFAULT_MAX_SIZE) -> list[Path]:
    """Install every model folder of an nnU-Net v2 export zip into ``workspace.results/<dataset>/`` as
    ``AutoSegNet__<plans>__<configuration>``; returns the installed folders.

    ``trust_checkpoints``: load checkpoints holding arbitrary Python objects (runs code from them; see
    :func:`~AutoSegNetLib.models.nnunet_import.load_nnunet_checkpoint`). ``max_size``: the most bytes unpacked.
    """
    stop = stop or StopRequest()
    stop.raise_if_requested("nothing was installed")
    zip_path = Path(zip_path)
    with zipfile.ZipFile(zip_path) as archive:
        members = checked_members(archive, zip_path)
        dataset, models = export_layout(list(members), zip_path)
        names = [name for files in models.values() for name in files]
        total = check_member_sizes(members, names, zip_path, max_size)
        target_root = workspace.results / dataset
        check_free_space(2 * total, target_root, zip_path)  # unpacked + converted copies
        staging = staging_folder(target_root)
        try:
            extract_members(archive, members, names, staging / "zip", zip_path, stop, max_size)
            installed = _convert_and_move(staging, dataset, sorted(models), target_root, force, trust_checkpoints,
                                          zip_path, stop)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("Installed the nnU-Net v2 export %s as %s in %s", zip_path.name, ", ".join(p.name for p in installed),
             target_root)
    return installed


def export_layout(names: list[str], source: Path) -> tuple[str, dict[str, list[str]]]:
    """``(dataset folder, {model folder: [entries to unpack]})`` of an nnU-Net export; an error for a zip that holds
    no complete model or models of several datasets."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in names:
        match = _NEEDED.match(name)
        if match:
            found[match.group("dataset"), match.group("model")].append(name)
    complete = {key: files for key, files in found.items() if _has_plans_and_checkpoint(key, files)}
    datasets = sorted({dataset for dataset, _ in complete})
    if not complete:
        raise AutoSegNetError(
            f"{source} holds no complete nnU-Net v2 model; nnUNetv2_export_model_to_zip writes {_LAYOUT}."
        )
    if len(datasets) > 1:
        raise AutoSegNetError(f"{source} holds models of several datasets ({', '.join(datasets)}); install one zip "
                              "per dataset.")
    return datasets[0], {model: _one_checkpoint_kind(files) for (_, model), files in complete.items()}


def _has_plans_and_checkpoint(key: tuple[str, str], files: list[str]) -> bool:
    prefix = f"{key[0]}/{key[1]}/"
    present = {name[len(prefix):] for name in files}
    return set(REQUIRED_MODEL_FILES) <= present and any(p.endswith(CHECKPOINT_SUFFIX) for p in present)


def _one_checkpoint_kind(files: list[str]) -> list[str]:
    """The model's files with only ``checkpoint_final.pth`` when it has any, else only ``checkpoint_best.pth``."""
    kind = "final" if any(f.endswith(f"/{checkpoint_file_name('final')}") for f in files) else "best"
    wanted = f"/{checkpoint_file_name(kind)}"
    return [f for f in files if not f.endswith(CHECKPOINT_SUFFIX) or f.endswith(wanted)]


def _convert_and_move(staging: Path, dataset: str, models: list[str], target_root: Path, force: bool,
                      trust_checkpoints: bool, source: Path, stop: StopRequest) -> list[Path]:
    """Import each unpacked model into ``staging/converted`` and rename the results into ``target_root``."""
    unpacked = staging / "zip" / dataset
    _check_targets([target_root / _installed_name(unpacked / m, source) for m in models], models, force, source)
    converted = []
    for model in models:
        stop.raise_if_requested("nothing was installed")
        converted.append(_import(unpacked / model, staging / "converted", trust_checkpoints, source, staging))
    targets = [target_root / folder.name for folder in converted]
    _check_targets(targets, models, force, source)
    stop.raise_if_requested("nothing was installed")
    move_folders_into_place(list(zip(converted, targets)))  # from here on, no stop: all or nothing
    return targets


def _installed_name(model: Path, source: Path) -> str:
    """``AutoSegNet__<plans name from plans.json>__<configuration from the folder name>``."""
    plans_name = read_json(model / PLANS_FILE).get("plans_name") if (model / PLANS_FILE).is_file() else None
    if not isinstance(plans_name, str) or not plans_name or "/" in plans_name:
        raise AutoSegNetError(f"{source}: {model.name}/plans.json has no valid 'plans_name'; is it an nnU-Net v2 plan?")
    parts = split_model_folder_name(model.name)  # import_nnunet_model refuses a name without a configuration
    return model_folder_name(plans_name, parts[2] if parts is not None else model.name)


def _check_targets(targets: list[Path], models: list[str], force: bool, source: Path) -> None:
    names = [t.name for t in targets]
    twins = sorted({n for n in names if names.count(n) > 1})
    if twins:
        raise AutoSegNetError(
            f"{source} holds several trainers' models of the same plans and configuration ({', '.join(models)}), "
            f"which would all become {', '.join(twins)}; export one trainer per zip (nnUNetv2_export_model_to_zip "
            "-tr TRAINER)."
        )
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise AutoSegNetError(f"{', '.join(existing)} already exist(s). Use --force to replace the installed model.")


def _import(model: Path, output: Path, trust_checkpoints: bool, source: Path, staging: Path) -> Path:
    """:func:`import_nnunet_model` of one unpacked model folder, its errors naming the zip instead of the staging
    folder."""
    checkpoint = "final" if any(model.glob(f"{FOLD_FOLDER_GLOB}/{checkpoint_file_name('final')}")) else "best"
    try:
        return import_nnunet_model(model, output, checkpoint=checkpoint, trust_checkpoints=trust_checkpoints)
    except AutoSegNetError as error:
        inside = str(staging / "zip") + os.sep
        raise AutoSegNetError(str(error).replace(inside, f"{source}:")) from None
