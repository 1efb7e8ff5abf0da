"""Trained and installed models in the workspace, and the versions of the annotate-correct-retrain loop.

A model folder holds ``plans.json``, ``dataset.json`` and ``fold_<k>/checkpoint_final.pth`` (the engine's
:mod:`AutoSegNetLib.layout`). Training writes into ``results/<Dataset>/AutoSegNet__<plans>__<configuration>/``;
after each successful training ``autosegnet version save`` copies what prediction needs (plans, dataset.json,
final checkpoints, validation summary) into ``versions/<Dataset>/<configuration>/v<NNN>/``, so the user can go
back to any round. Retraining fine-tunes from a version into the working folder again (``version prepare``
empties the working fold first). Torch-free: the Slicer module lists models with it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import (
    DATASET_JSON_FILE,
    FOLD_FOLDER_GLOB,
    OPTIONAL_MODEL_FILES,
    PLANS_FILE,
    PROGRESS_FILE,
    REQUIRED_MODEL_FILES,
    TRAINING_LOG_FILE,
    VALIDATION_SUMMARY,
    checkpoint_file_name,
    fold_folder_name,
    folds_with_checkpoint,
    model_folder_name,
    split_model_folder_name,
)
from AutoSegNetLib.utils.atomic import write_json

log = logging.getLogger(__name__)

#: The checkpoint kind the module predicts with, keeps in versions and fine-tunes from, and its file name.
CHECKPOINT_KIND = "final"
CHECKPOINT = checkpoint_file_name(CHECKPOINT_KIND)
VERSION_FILE = "version.json"
KEPT_FOLD_FILES = (CHECKPOINT, VALIDATION_SUMMARY, PROGRESS_FILE, TRAINING_LOG_FILE)


@dataclass
class ModelInfo:
    """What the module shows about a model folder."""

    folder: Path
    dataset: str
    configuration: str
    folds: list[str]
    labels: dict[int, str]
    channel_names: list[str]
    dice: float | None = None
    version: str | None = None
    extra: dict = field(default_factory=dict)

    def display_name(self) -> str:
        text = f"{self.dataset} · {self.configuration}"
        if self.version:
            text += f" · {self.version}"
        text += f" · folds {','.join(self.folds)}"
        if self.dice is not None:
            text += f" · Dice {self.dice:.3f}"
        return text


def model_label_names(dataset_labels: dict[str, int | list[int]],
                      regions_class_order: list[int] | None = None) -> dict[int, str]:
    """``{value in the prediction: name}`` from a model's dataset.json ``labels``.

    Region-based models write ``regions_class_order[i]`` for the i-th region (labels in file order).
    """
    foreground = [(name, value) for name, value in dataset_labels.items()
                  if name not in ("background", "ignore") and value not in (0, [0])]
    if regions_class_order is not None:
        return {int(v): name for (name, _), v in zip(foreground, regions_class_order)}
    return {int(value): name for name, value in foreground}


def read_model(folder: Path, folds: list[str] | None = None) -> ModelInfo | None:
    """The model in ``folder``, or None if it is not a usable model folder (no final checkpoint).

    ``folds``: the folds with a final checkpoint when they are known otherwise -- a server's model, whose
    metadata the client mirrors without its checkpoints.
    """
    folder = Path(folder)
    if not (folder / PLANS_FILE).is_file() or not (folder / DATASET_JSON_FILE).is_file():
        return None
    folds = list(folds) if folds is not None else folds_with_checkpoint(folder, CHECKPOINT_KIND)
    if not folds:
        return None
    dataset = _read_json(folder / DATASET_JSON_FILE)
    version = _read_json(folder / VERSION_FILE)
    dices = [d for d in (validation_dice(folder / fold_folder_name(f)) for f in folds) if d is not None]
    return ModelInfo(
        folder=folder,
        dataset=version.get("dataset") or folder.parent.name,
        configuration=version.get("configuration") or _configuration_from_name(folder.name),
        folds=folds,
        labels=model_label_names(dataset.get("labels", {}), dataset.get("regions_class_order")),
        channel_names=[dataset.get("channel_names", {})[k] for k in sorted(dataset.get("channel_names", {}), key=int)],
        dice=sum(dices) / len(dices) if dices else None,
        version=folder.name if version else None,
        extra=version,
    )


def find_models(workspace_root: Path) -> list[ModelInfo]:
    """Every model under ``results/`` (trained or installed) and ``versions/``, newest versions last."""
    root = Path(workspace_root)
    candidates = sorted((root / "results").glob("*/*")) + sorted((root / "versions").glob("*/*/v*"))
    return [model for model in map(read_model, candidates) if model is not None]


def validation_dice(fold_folder: Path) -> float | None:
    """Mean foreground Dice from ``validation/summary.json`` (nnU-Net's layout or a flat ``mean_dice``)."""
    summary = _read_json(Path(fold_folder) / VALIDATION_SUMMARY)
    foreground = summary.get("foreground_mean")
    if isinstance(foreground, dict) and isinstance(foreground.get("Dice"), (int, float)):
        return float(foreground["Dice"])
    for key in ("mean_dice", "dice"):
        if isinstance(summary.get(key), (int, float)):
            return float(summary[key])
    mean = summary.get("mean")
    if isinstance(mean, dict):
        values = [m.get("Dice") for m in mean.values() if isinstance(m, dict)]
        values = [float(v) for v in values if isinstance(v, (int, float))]
        return sum(values) / len(values) if values else None
    return None


def snapshot_version(model_folder: Path, versions_root: Path, dataset: str, configuration: str,
                     based_on: Path | None = None, note: str = "") -> ModelInfo:
    """Copy what prediction needs from a trained model folder into the next ``v<NNN>`` folder."""
    model_folder = Path(model_folder)
    if read_model(model_folder) is None:
        raise AutoSegNetError(f"{model_folder} holds no finished training (no {FOLD_FOLDER_GLOB}/{CHECKPOINT}).")
    parent = Path(versions_root) / dataset / configuration
    number = 1 + max((int(p.name[1:]) for p in parent.glob("v[0-9][0-9][0-9]")), default=0)
    target = parent / f"v{number:03d}"
    partial = parent / f".v{number:03d}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name in (*REQUIRED_MODEL_FILES, *OPTIONAL_MODEL_FILES):
        if (model_folder / name).is_file():
            shutil.copy2(model_folder / name, partial / name)
    for fold in model_folder.glob(FOLD_FOLDER_GLOB):
        for name in KEPT_FOLD_FILES:
            if (fold / name).is_file():
                (partial / fold.name / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(fold / name, partial / fold.name / name)
    write_json(partial / VERSION_FILE, {
        "dataset": dataset, "configuration": configuration, "source": str(model_folder),
        "based_on": str(based_on) if based_on else None, "created": time.time(), "note": note,
        "checkpoints": _checkpoint_stamps(model_folder),
    })
    partial.rename(target)  # a version folder appears complete or not at all
    log.info("Saved model version %s", target)
    return read_model(target)


def version_holding(model_folder: Path, versions_root: Path) -> ModelInfo | None:
    """The saved version that holds exactly this working model's final checkpoints (same folds, sizes and
    modification times), or None: saving the same training twice then finds the first version."""
    stamps = _checkpoint_stamps(Path(model_folder))
    if not stamps:
        return None
    return next((m for m in find_models(Path(versions_root).parent)
                 if m.version and m.extra.get("checkpoints") == stamps), None)


def _checkpoint_stamps(model_folder: Path) -> dict[str, list]:
    return {f.name: _file_stamp(f / CHECKPOINT) for f in sorted(model_folder.glob(FOLD_FOLDER_GLOB))
            if (f / CHECKPOINT).is_file()}


def working_model_folder(results_dataset: Path, configuration: str) -> Path | None:
    """The training output folder ``AutoSegNet__<plans>__<configuration>`` of a dataset, if any."""
    matches = sorted(Path(results_dataset).glob(model_folder_name("*", configuration)))
    return matches[0] if matches else None


def prepare_for_finetuning(model_folder: Path, fold: str, versions_root: Path, dataset: str,
                           configuration: str) -> None:
    """Empty the working fold folder before a fine-tuning run writes into it.

    A finished training there that no version holds yet is saved as a version first, so nothing is lost.
    """
    fold_folder = Path(model_folder) / fold_folder_name(fold)
    if not fold_folder.exists():
        return
    if (fold_folder / CHECKPOINT).is_file():
        stamp = _file_stamp(fold_folder / CHECKPOINT)
        saved = any(m.extra.get("checkpoints", {}).get(fold_folder.name) == stamp
                    for m in find_models(Path(versions_root).parent) if m.version)
        if not saved:
            snapshot_version(model_folder, versions_root, dataset, configuration, note="saved before fine-tuning")
    shutil.rmtree(fold_folder)


def _file_stamp(path: Path) -> list:
    stat = path.stat()
    return [stat.st_size, round(stat.st_mtime, 3)]


def _configuration_from_name(name: str) -> str:
    parts = split_model_folder_name(name)
    return parts[2] if parts is not None else name


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
