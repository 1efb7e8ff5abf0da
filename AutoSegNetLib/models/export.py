"""``export-model``: pack trained model folders into one zip with a manifest (versions, labels, sha256 of files).

The zip holds, relative to the dataset's results folder, per model folder: ``plans.json``, ``dataset.json``,
``fingerprint.json`` and ``postprocessing.json`` when present, and ``fold_<k>/checkpoint_<name>.pth`` of the
chosen folds, stripped to what prediction needs (no optimiser, scaler or random-generator state), so the
checkpoints load with ``torch.load(weights_only=True)``. Checkpoints are read through the one checkpoint reader,
which refuses files that would run code. A cascade stage brings its low-resolution stage along.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from AutoSegNetLib import __version__
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.model_folder import ModelFolder, find_model_folder
from AutoSegNetLib.layout import (
    CHECKPOINT_SUFFIX,
    OPTIONAL_MODEL_FILES,
    REQUIRED_MODEL_FILES,
    checkpoint_file_name,
    checkpoint_member,
    model_folder_name,
    parse_folds,
    parse_model_folder_name,
)
from AutoSegNetLib.models.manifest import MANIFEST_NAME, Manifest, ModelEntry
from AutoSegNetLib.planning.plans import PLANS_VERSION
from AutoSegNetLib.utils.atomic import atomic_path
from AutoSegNetLib.utils.checkpoint_io import plain_copy
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)

#: Checkpoint fields kept in an exported model (all plain data and tensors).
EXPORTED_CHECKPOINT_KEYS = (
    "format", "version", "network_weights", "epoch", "best_ema", "configuration", "inference_allowed_mirroring_axes",
    "training_config",
)


def export_model(
    workspace: Workspace,
    dataset: str,
    configurations: Sequence[str],
    output: str | Path,
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "final",
    plans_name: str | None = None,
    description: str = "",
) -> Manifest:
    """Write the zip ``output`` for ``configurations`` of ``dataset``; returns its manifest."""
    requested = [find_model_folder(workspace, dataset, c, plans_name) for c in configurations]
    folders = _with_previous_stages(requested)
    files: dict[str, bytes] = {}
    entries = []
    exported: dict[Path, list[str]] = {}
    first = None
    for folder in folders:
        model = ModelFolder.open(folder)
        first = first or model
        have = model.available_folds(checkpoint)
        if folder in requested:
            chosen = parse_folds(folds) or have
        else:  # a low-resolution stage brought along: the folds its cascade stages export, where it has them
            wanted = [f for cascade in folders if folders[cascade] == folder for f in exported.get(cascade, [])]
            chosen = [f for f in dict.fromkeys(wanted) if f in have] or have
        exported[folder] = chosen
        entries.append(_pack_model_folder(model, folder, chosen, checkpoint, files))
    return _finish(Path(output), first, workspace.resolve_dataset(dataset), entries, files, description)


def export_model_folder(folder: str | Path, output: str | Path, folds: Sequence[int | str] | None = None,
                        checkpoint: str = "final", description: str = "") -> Manifest:
    """Write the zip ``output`` for one model folder given by its path, e.g. a saved version
    ``versions/<Dataset>/<configuration>/v<NNN>``. Its files go under the model-folder name
    ``AutoSegNet__<plans>__<configuration>``, so ``install-model`` installs it like any export."""
    folder = Path(folder)
    model = ModelFolder.open(folder)
    if model.configuration.previous_stage is not None:
        raise AutoSegNetError(f"{folder} is a cascade stage, which needs its low-resolution stage: export it with "
                              "-d DATASET -c CONFIGURATION instead.")
    chosen = parse_folds(folds) or model.available_folds(checkpoint)
    files: dict[str, bytes] = {}
    member = model_folder_name(model.plans.plans_name, model.configuration_name)
    entry = _pack_model_folder(model, folder, chosen, checkpoint, files, member)
    return _finish(Path(output), model, model.plans.dataset_name, [entry], files, description)


def _finish(output: Path, first: ModelFolder, dataset_name: str, entries: list[ModelEntry], files: dict[str, bytes],
            description: str) -> Manifest:
    """The manifest of ``entries`` (labels and channels from the ``first`` model), written with ``files``."""
    manifest = Manifest(
        engine_version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        dataset_name=dataset_name,
        labels=dict(first.dataset_json.labels),
        channel_names=dict(first.dataset_json.channel_names),
        file_ending=first.dataset_json.file_ending,
        models=entries,
        files={path: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for path, data in files.items()},
        plans_version=PLANS_VERSION,
        description=description,
    )
    _write_zip(output, manifest, files)
    log.info("Exported %s (%d files) to %s", ", ".join(e.folder for e in entries), len(files), output)
    return manifest


def _pack_model_folder(model: ModelFolder, folder: Path, folds: list[str], checkpoint: str,
                       files: dict[str, bytes], member: str | None = None) -> ModelEntry:
    """Add the model folder's files and the stripped checkpoints of ``folds`` to ``files`` (zip member name ->
    bytes) under ``member`` (default: the folder's name); returns the folder's manifest entry."""
    if not folds:
        raise AutoSegNetError(f"{folder} has no fold with {checkpoint_file_name(checkpoint)} to export.")
    member = member or folder.name
    for name in (*REQUIRED_MODEL_FILES, *OPTIONAL_MODEL_FILES):
        if (folder / name).is_file():
            files[f"{member}/{name}"] = (folder / name).read_bytes()
    for fold in folds:
        data = model.load_checkpoint(fold, checkpoint)
        files[f"{member}/{checkpoint_member(fold, checkpoint)}"] = stripped_checkpoint(data)
    return ModelEntry(member, model.configuration_name, folds, checkpoint)


def stripped_checkpoint(checkpoint: dict[str, Any]) -> bytes:
    """The checkpoint with only :data:`EXPORTED_CHECKPOINT_KEYS` as plain data, serialised; loadable with
    ``weights_only=True`` and no allowed globals."""
    kept = {k: checkpoint[k] for k in EXPORTED_CHECKPOINT_KEYS if k in checkpoint}
    try:
        kept = plain_copy(kept)
    except TypeError as error:  # training_config holding other objects: leave it out rather than ship them
        log.warning("Exporting without training_config: %s", error)
        kept.pop("training_config", None)
        kept = plain_copy(kept)
    return _serialise(kept)


def _serialise(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _with_previous_stages(folders: list[Path]) -> dict[Path, Path | None]:
    """The requested model folders, then the low-resolution model folder of every cascade stage (once), each
    mapped to its previous stage's folder (None for a configuration that is no cascade stage)."""
    out: dict[Path, Path | None] = {folder: None for folder in folders}
    for folder in list(out):
        model = ModelFolder.open(folder)
        stage = model.configuration.previous_stage
        if stage is None:
            continue
        parsed = parse_model_folder_name(folder.name)
        previous = folder.parent / model_folder_name(parsed[0] if parsed else model.plans.plans_name, stage)
        if not previous.is_dir():
            raise AutoSegNetError(f"{folder.name} is a cascade stage; its {stage} model {previous} is missing.")
        out[folder] = previous
        if previous not in out:
            log.info("Including %s: %s needs it.", previous.name, folder.name)
            out[previous] = None
    return out


def _write_zip(path: Path, manifest: Manifest, files: dict[str, bytes]) -> None:
    with atomic_path(path, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w") as archive:
        archive.writestr(MANIFEST_NAME, json.dumps(manifest.to_dict(), indent=2), zipfile.ZIP_DEFLATED)
        for name, data in files.items():
            method = zipfile.ZIP_STORED if name.endswith(CHECKPOINT_SUFFIX) else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, method)
