"""The one definition of a trained model folder's layout: folder and file names, fold folders, checkpoint files.

Everything that reads or writes a model folder (training, prediction, export and install, evaluation, the CLI and
the Slicer module) takes these names from here; so does whatever reads ``dataset.json``, ``plans.json`` or
``fingerprint.json`` in a raw or preprocessed dataset folder, which uses the same names. Names follow nnU-Net v2,
so its tools recognise our folders::

    results/<DatasetXXX_Name>/AutoSegNet__<plans_name>__<configuration>/     (nnU-Net: <Trainer>__<Plans>__<config>)
        plans.json  dataset.json  fingerprint.json  postprocessing.json
        crossval_folds_0_1_2_3_4/                  find-best's cross-validation summary
        predicted_next_stage/<next configuration>/ a 3d_lowres stage's predictions for its cascade stage
        fold_0/ ... fold_4/  fold_all/
            checkpoint_final.pth  checkpoint_best.pth  checkpoint_latest.pth
            progress.json  progress.png  training_log.txt  status.json  .training.lock
            validation/<case><ending>  validation/summary.json

Folds are spelled one way: ``"0"``, ``"1"``, ... or ``"all"`` (:func:`fold_key`), so ``0``, ``"0"`` and ``"00"``
all name the folder ``fold_0``. Checkpoints are named by a short kind (``"final"``, ``"best"``, ``"latest"``);
:func:`checkpoint_file_name` turns it into the file name. Checkpoint files are read and written only through
:mod:`AutoSegNetLib.utils.checkpoint_io`, which checks the :data:`CHECKPOINT_FORMAT` and :data:`CHECKPOINT_VERSION`
defined here.

Only the standard library is imported here (no PyTorch, no NumPy): the Slicer GUI process imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from AutoSegNetLib.errors import AutoSegNetError

if TYPE_CHECKING:
    from AutoSegNetLib.workspace import Workspace

# ----- model folders ------------------------------------------------------------------------------------------
#: The trainer part of our model folder names (nnU-Net puts its trainer class there).
MODEL_FOLDER_PREFIX = "AutoSegNet"
#: Separates trainer, plans name and configuration in a model folder name; plans names must not contain it.
MODEL_FOLDER_SEPARATOR = "__"
#: The plans file without ``.json``: the default of ``preprocess --plans-name`` (other plans files of a preprocessed
#: dataset sit beside it as ``<name>.json``).
PLANS_FILE_STEM = "plans"
PLANS_FILE = f"{PLANS_FILE_STEM}.json"
DATASET_JSON_FILE = "dataset.json"
FINGERPRINT_FILE = "fingerprint.json"
POSTPROCESSING_FILE = "postprocessing.json"
#: Files every model folder has, and files it has when they were made (all copied by export and versions).
REQUIRED_MODEL_FILES = (PLANS_FILE, DATASET_JSON_FILE)
OPTIONAL_MODEL_FILES = (FINGERPRINT_FILE, POSTPROCESSING_FILE)
#: Folder in a low-resolution model folder holding the cross-validation predictions for each next stage.
PREDICTED_NEXT_STAGE = "predicted_next_stage"

_MODEL_FOLDER_NAME = re.compile(r"^(?P<trainer>[^_].*?)__(?P<plans>.+?)__(?P<configuration>[^_].*)$")

# ----- fold folders -------------------------------------------------------------------------------------------
FOLD_FOLDER_PREFIX = "fold_"
#: The fold trained on every case.
ALL_FOLDS = "all"
#: Matches every fold folder (and possibly other folders starting with ``fold_``: check with
#: :func:`parse_fold_folder_name`).
FOLD_FOLDER_GLOB = f"{FOLD_FOLDER_PREFIX}*"
#: Lock file in a fold folder, held by the training of that fold (see :mod:`AutoSegNetLib.utils.locks`).
FOLD_LOCK_FILE = ".training.lock"
PROGRESS_FILE = "progress.json"
PROGRESS_PLOT_FILE = "progress.png"
TRAINING_LOG_FILE = "training_log.txt"
#: The latest progress event of the fold's training (read by whoever follows a training started elsewhere).
STATUS_FILE = "status.json"
#: The fold's cross-validation predictions, and their summary (relative to the fold folder, POSIX).
VALIDATION_FOLDER = "validation"
#: The evaluation summary of a folder of predictions (``validation/``, ``crossval_folds_*/``, ``evaluate``'s
#: default output).
SUMMARY_FILE = "summary.json"
VALIDATION_SUMMARY = f"{VALIDATION_FOLDER}/{SUMMARY_FILE}"
#: The uncertainty map a prediction writes beside a case's label map: ``<case>_uncertainty<ending>``; anything
#: that lists a prediction folder's cases skips these files.
UNCERTAINTY_SUFFIX = "_uncertainty"

_FOLD_NUMBER = re.compile(r"[0-9]+")

# ----- checkpoints --------------------------------------------------------------------------------------------
#: Checkpoint kinds, in the order the CLI offers them: ``final`` (end of training), ``best`` (best EMA pseudo-Dice),
#: ``latest`` (periodic and stop saves).
CHECKPOINT_KINDS = ("final", "best", "latest")
CHECKPOINT_PREFIX = "checkpoint_"
CHECKPOINT_SUFFIX = ".pth"
CHECKPOINT_FILE_GLOB = f"{CHECKPOINT_PREFIX}*{CHECKPOINT_SUFFIX}"
#: The ``format`` and ``version`` fields of every checkpoint we write (checked by the checkpoint reader).
CHECKPOINT_FORMAT = "autosegnet-checkpoint"
CHECKPOINT_VERSION = 1


# ----- model folder names -------------------------------------------------------------------------------------
def model_folder_name(plans_name: str, configuration: str) -> str:
    """``AutoSegNet__<plans_name>__<configuration>``; ``"*"`` for either part gives a glob pattern."""
    return MODEL_FOLDER_SEPARATOR.join((MODEL_FOLDER_PREFIX, plans_name, configuration))


def split_model_folder_name(name: str) -> tuple[str, str, str] | None:
    """``(trainer, plans_name, configuration)`` of any ``<Trainer>__<Plans>__<configuration>`` name (ours or
    nnU-Net's), or None if ``name`` does not have that form."""
    match = _MODEL_FOLDER_NAME.match(name)
    return (match.group("trainer"), match.group("plans"), match.group("configuration")) if match else None


def parse_model_folder_name(name: str) -> tuple[str, str] | None:
    """``(plans_name, configuration)`` from our model folder's name, the inverse of :func:`model_folder_name`;
    None if the name does not follow the pattern (e.g. an nnU-Net trainer's folder)."""
    parts = split_model_folder_name(name)
    return (parts[1], parts[2]) if parts is not None and parts[0] == MODEL_FOLDER_PREFIX else None


def model_folder_path(workspace: Workspace, dataset_name: str, plans_name: str, configuration: str) -> Path:
    """``<results>/<dataset_name>/AutoSegNet__<plans_name>__<configuration>`` (``dataset_name``: the folder name)."""
    return workspace.results / dataset_name / model_folder_name(plans_name, configuration)


def crossval_folder_name(folds: Sequence[str]) -> str:
    """``crossval_folds_0_1_2_3_4``: where find-best writes a configuration's cross-validation summary."""
    return f"crossval_folds_{'_'.join(folds)}"


# ----- folds --------------------------------------------------------------------------------------------------
def fold_key(fold: int | str) -> str:
    """The one spelling of a fold: ``"all"``, or the number without leading zeros (``0``, ``"0"``, ``"00"`` ->
    ``"0"``). Anything else is an error."""
    text = str(fold).strip()
    if text == ALL_FOLDS:
        return text
    if not _FOLD_NUMBER.fullmatch(text):
        raise AutoSegNetError(f"Fold {fold!r} is not a fold number or 'all'.")
    return str(int(text))


def parse_folds(folds: Any) -> list[str] | None:
    """Folds in their one spelling (:func:`fold_key`): ``"all"``, ``0``, ``[0, 1]``, ``["0", "all"]`` ->
    ``["all"]``, ``["0"]``, ``["0", "1"]``, ``["0", "all"]``; ``None`` stays None (meaning: every fold the model
    has)."""
    if folds is None:
        return None
    if isinstance(folds, (str, int)):
        folds = [folds]
    return [fold_key(fold) for fold in folds]


def fold_folder_name(fold: int | str) -> str:
    """``fold_0``, ``fold_1``, ... or ``fold_all`` (``fold`` in any spelling :func:`fold_key` accepts)."""
    return f"{FOLD_FOLDER_PREFIX}{fold_key(fold)}"


def parse_fold_folder_name(name: str) -> str | None:
    """The fold (``"0"``, ``"all"``) of a fold folder's name, the inverse of :func:`fold_folder_name`; None for any
    other name, including spellings training never writes (``fold_01``)."""
    if not name.startswith(FOLD_FOLDER_PREFIX):
        return None
    try:
        fold = fold_key(name[len(FOLD_FOLDER_PREFIX):])
    except AutoSegNetError:
        return None
    return fold if fold_folder_name(fold) == name else None


def sort_folds(folds: Iterable[str]) -> list[str]:
    """Folds in numeric order, ``"all"`` last: ``["all", "10", "2"]`` -> ``["2", "10", "all"]``."""
    return sorted(folds, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))


def fold_folder(model_folder: str | Path, fold: int | str) -> Path:
    """``<model_folder>/fold_<k>``."""
    return Path(model_folder) / fold_folder_name(fold)


def validation_folder(model_folder: str | Path, fold: int | str) -> Path:
    """``<model_folder>/fold_<k>/validation``: the fold's cross-validation predictions."""
    return fold_folder(model_folder, fold) / VALIDATION_FOLDER


# ----- checkpoints --------------------------------------------------------------------------------------------
def checkpoint_file_name(kind: str) -> str:
    """``checkpoint_<kind>.pth`` for a kind of :data:`CHECKPOINT_KINDS`; another kind is an error."""
    if kind not in CHECKPOINT_KINDS:
        raise AutoSegNetError(f"Checkpoint {kind!r} is not one of {', '.join(CHECKPOINT_KINDS)}.")
    return f"{CHECKPOINT_PREFIX}{kind}{CHECKPOINT_SUFFIX}"


def parse_checkpoint_file_name(name: str) -> str | None:
    """The kind (``"final"``) of a checkpoint file name (``checkpoint_final.pth``), or None for any other name."""
    if not (name.startswith(CHECKPOINT_PREFIX) and name.endswith(CHECKPOINT_SUFFIX)):
        return None
    kind = name[len(CHECKPOINT_PREFIX):-len(CHECKPOINT_SUFFIX)]
    return kind if kind in CHECKPOINT_KINDS else None


def checkpoint_member(fold: int | str, kind: str) -> str:
    """``fold_<k>/checkpoint_<kind>.pth``: a checkpoint's path relative to its model folder, POSIX-style (as zips
    and manifests store it)."""
    return f"{fold_folder_name(fold)}/{checkpoint_file_name(kind)}"


def checkpoint_path(model_folder: str | Path, fold: int | str, kind: str) -> Path:
    """``<model_folder>/fold_<k>/checkpoint_<kind>.pth`` (whether or not it exists)."""
    return fold_folder(model_folder, fold) / checkpoint_file_name(kind)


def folds_with_checkpoint(model_folder: str | Path, kind: str = "final") -> list[str]:
    """The folds (``"0"``, ..., ``"all"``, in :func:`sort_folds` order) of ``model_folder`` that have a
    ``checkpoint_<kind>.pth``."""
    name = checkpoint_file_name(kind)
    found = []
    for folder in Path(model_folder).glob(FOLD_FOLDER_GLOB):
        fold = parse_fold_folder_name(folder.name)
        if fold is not None and (folder / name).is_file():
            found.append(fold)
    return sort_folds(found)
