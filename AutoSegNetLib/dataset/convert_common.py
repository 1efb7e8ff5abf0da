"""What every converter shares: a staging folder published atomically, safe file copies, channel splitting.

Converters never write into their source. They build the new dataset in a hidden staging folder beside
the target (``raw/.DatasetXXX_Name.<pid>@<host>-<random>.tmp``) and rename it to ``raw/DatasetXXX_Name`` only when
everything succeeded, so a crash or an error never leaves a half-converted dataset under the real name.
An existing dataset is replaced only when the caller asks for it (``overwrite=True``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import SimpleITK as sitk

from AutoSegNetLib.dataset.raw import DATASET_FOLDER_PATTERN, dataset_folder_name
from AutoSegNetLib.errors import AutoSegNetError, DatasetFormatError
from AutoSegNetLib.imageio import file_ending, io_for
from AutoSegNetLib.imageio.sitk_io import read_sitk
from AutoSegNetLib.layout import DATASET_JSON_FILE
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.atomic import atomic_folder, read_json
from AutoSegNetLib.utils.workers import run_parallel

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

SITK_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
# Endings that cannot be copied as one self-contained file or would lose label values: write them anew.
REENCODED_ENDING = {".nhdr": ".nrrd", ".mhd": ".mha", ".gif": ".png", ".jpg": ".png", ".jpeg": ".png",
                    ".bmp": ".png"}


@dataclass(frozen=True)
class ConversionResult:
    """What a converter produced: the dataset folder and how many cases/files went where."""

    folder: Path
    num_training: int
    num_test: int
    files_copied: int
    files_written: int

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "num_training": self.num_training, "num_test": self.num_test,
                "files_copied": self.files_copied, "files_written": self.files_written}


@dataclass(frozen=True)
class FilesDone:
    """Per-case bookkeeping returned by the converter workers."""

    channels: int
    copied: int
    written: int


# ----- target folder ------------------------------------------------------------------------------------
def target_folder(raw: Path, dataset_id: int, name: str, sources: Sequence[Path], overwrite: bool) -> Path:
    """``raw/DatasetXXX_Name``, after checking it may be (re)created without touching any source.

    Refuses an existing dataset unless ``overwrite``, another dataset with the same ID, and targets that
    lie inside a source folder (or contain one, which replacing would delete).
    """
    folder = Path(raw).resolve() / dataset_folder_name(dataset_id, name)
    for source in sources:
        source = Path(source).resolve()
        if _is_within(folder, source) or _is_within(source, folder):
            raise AutoSegNetError(
                f"The converted dataset {folder} would overlap its source {source}; converters never write into "
                "their source. Choose another workspace (--workspace)."
            )
    if folder.exists() and not overwrite:
        raise AutoSegNetError(
            f"Dataset {folder.name} already exists in {folder.parent}; pass --overwrite to replace it, or choose "
            "another --id / --name."
        )
    if raw.is_dir():
        clashes = [p.name for p in Path(raw).iterdir() if p.is_dir() and p.name != folder.name
                   and (m := DATASET_FOLDER_PATTERN.match(p.name)) and int(m.group(1)) == dataset_id]
        if clashes:
            raise AutoSegNetError(
                f"Dataset ID {dataset_id} is already used by {', '.join(sorted(clashes))} in {raw}; datasets are "
                "addressed by ID, so choose another --id (or delete that dataset)."
            )
    return folder


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


@contextlib.contextmanager
def staged_dataset(folder: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``folder`` in one rename, on error it is removed
    (:func:`~AutoSegNetLib.utils.atomic.atomic_folder`)."""
    converted = False
    try:
        with atomic_folder(folder, replace=overwrite) as staging:
            yield staging
            converted = True
    except FileExistsError as exc:
        if not converted:
            raise
        raise AutoSegNetError(f"Dataset {folder} appeared while converting; pass --overwrite to replace it.") from exc


# ----- source parsing -----------------------------------------------------------------------------------
TASK_FOLDER_PATTERN = re.compile(r"^Task(\d+)_([A-Za-z0-9_\-]+)$")


def id_and_name_from_task_folder(source: Path, dataset_id: int | None, name: str | None) -> tuple[int, str]:
    """Dataset ID and name: given ones win, else taken from a ``TaskXX_Name`` folder name."""
    match = TASK_FOLDER_PATTERN.match(Path(source).name)
    if dataset_id is None:
        if not match:
            raise AutoSegNetError(
                f"Cannot take a dataset ID from the folder name {Path(source).name!r} (expected TaskXX_Name); "
                "give one with --id."
            )
        dataset_id = int(match.group(1))
    if name is None:
        if not match:
            raise AutoSegNetError(f"Cannot take a dataset name from {Path(source).name!r}; give one with --name.")
        name = match.group(2)
    return dataset_id, name


@dataclass(frozen=True)
class LegacyDatasetJson:
    """The parts of an MSD / nnU-Net v1 ``dataset.json`` a conversion needs (paths relative to the source)."""

    modality: dict[str, str]
    labels: dict[str, int]
    training: list[tuple[str, str]]
    test: list[str] | None
    metadata: dict[str, Any]


LEGACY_METADATA = ("name", "description", "reference", "licence", "license", "release")


def read_legacy_dataset_json(source: Path) -> LegacyDatasetJson:
    """Parse ``source/dataset.json`` in MSD / nnU-Net v1 form; errors name the file and the field."""
    path = Path(source) / DATASET_JSON_FILE
    data = read_json(path)
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object at the top level.")
    for key in ("modality", "labels", "training"):
        if key not in data:
            hint = " (this looks like an nnU-Net v2 dataset already)" if "channel_names" in data else ""
            raise DatasetFormatError(f"{path}: required field {key!r} is missing{hint}.")
    modality = _index_dict(data["modality"], path, "modality")
    labels = {}
    for value, label_name in _index_dict(data["labels"], path, "labels").items():
        if label_name in labels:
            raise DatasetFormatError(f"{path}: field 'labels': the name {label_name!r} is used twice.")
        labels[label_name] = int(value)
    if not isinstance(data["training"], list) or not all(
        isinstance(e, dict) and isinstance(e.get("image"), str) and isinstance(e.get("label"), str)
        for e in data["training"]
    ):
        raise DatasetFormatError(f"{path}: field 'training' must be a list of {{'image': ..., 'label': ...}} paths.")
    test = data.get("test")
    if test is not None and not (isinstance(test, list) and all(isinstance(t, str) for t in test)):
        raise DatasetFormatError(f"{path}: field 'test' must be a list of image paths.")
    return LegacyDatasetJson(
        modality=modality, labels=labels, training=[(e["image"], e["label"]) for e in data["training"]],
        test=test, metadata={k: data[k] for k in LEGACY_METADATA if isinstance(data.get(k), str)},
    )


def _index_dict(value: Any, path: Path, fieldname: str) -> dict[str, str]:
    """A ``{"0": "name", "1": ...}`` object with consecutive integer keys, in key order."""
    if not isinstance(value, dict) or not value:
        raise DatasetFormatError(f"{path}: field {fieldname!r} must be a non-empty object like {{\"0\": \"...\"}}.")
    if not all(str(k).isdigit() and isinstance(v, str) and v for k, v in value.items()):
        raise DatasetFormatError(f"{path}: field {fieldname!r}: keys must be integers and values names, got {value}.")
    keys = sorted(int(k) for k in value)
    if keys != list(range(len(keys))):
        raise DatasetFormatError(f"{path}: field {fieldname!r}: keys must be consecutive from 0, got {keys}.")
    return {str(k): value[str(k)] for k in keys}


def source_file(source: Path, relative: str) -> Path:
    """A path from a legacy dataset.json (``./imagesTr/x.nii.gz``) inside ``source``."""
    return (Path(source) / relative).resolve()


def case_name_of(path: str | Path) -> str:
    """``hippocampus_001`` for ``./imagesTr/hippocampus_001.nii.gz``."""
    name = Path(path).name
    return name[: -len(file_ending(name))] if file_ending(name) else name


def require_files(paths: Iterable[Path], what: str, where: Path) -> None:
    """Raise one error listing every missing file."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise AutoSegNetError(f"{len(missing)} {what} listed in {where} do not exist: {shown}.")


# ----- files ------------------------------------------------------------------------------------------
def copy_file(source: Path, target: Path) -> None:
    """Byte-for-byte copy (contents only: the source's read-only mode is not carried over)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def split_sitk_channels(source: Path, target_of: Callable[[int], Path]) -> FilesDone:
    """Write each channel of a medical image file to ``target_of(channel)``.

    A 2D/3D scalar image with the same ending is copied byte for byte; a 4D image ``(x, y, z, t)`` is
    split along t (MSD multi-channel layout) and a multi-component 3D image along its components. Split
    channels keep the voxel type, spacing, origin and the 3x3 part of the direction.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(source))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise AutoSegNetError(f"Cannot read image {source}: {str(exc).strip().splitlines()[-1]}") from None
    dim, components = reader.GetDimension(), reader.GetNumberOfComponents()
    same_ending = file_ending(source) == file_ending(target_of(0)) and file_ending(source) not in REENCODED_ENDING
    if components == 1 and dim in (2, 3) and same_ending:
        copy_file(source, target_of(0))
        return FilesDone(channels=1, copied=1, written=0)
    image = read_sitk(source)
    if components == 1 and dim in (2, 3):
        channels = [image]
    elif components == 1 and dim == 4:
        channels = _split_4d(image)
    elif components > 1 and dim in (2, 3):
        channels = [sitk.VectorIndexSelectionCast(image, c) for c in range(components)]
    else:
        raise AutoSegNetError(f"{source}: a {dim}D image with {components} components cannot be split into channels.")
    for index, channel in enumerate(channels):
        target = target_of(index)
        target.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(channel, str(target), useCompression=True)
    return FilesDone(channels=len(channels), copied=0, written=len(channels))


def _split_4d(image: sitk.Image) -> list[sitk.Image]:
    """3D images along the 4th axis of ``image``, with its first three axes' geometry."""
    array = sitk.GetArrayFromImage(image)  # (T, Z, Y, X)
    spacing, origin = image.GetSpacing()[:3], image.GetOrigin()[:3]
    d = np.asarray(image.GetDirection()).reshape(4, 4)[:3, :3].ravel()
    out = []
    for volume in array:
        channel = sitk.GetImageFromArray(volume)
        channel.SetSpacing(spacing)
        channel.SetOrigin(origin)
        channel.SetDirection(tuple(float(x) for x in d))
        out.append(channel)
    return out


def copy_label(source: Path, target: Path) -> FilesDone:
    """Copy a label file byte for byte when the ending allows, else rewrite it in the target's format."""
    if file_ending(source) == file_ending(target) and file_ending(source) not in REENCODED_ENDING:
        copy_file(source, target)
        return FilesDone(channels=0, copied=1, written=0)
    seg, geometry = io_for(source).read_seg(source)
    io_for(target).write_seg(seg, target, geometry)
    return FilesDone(channels=0, copied=0, written=1)


def compact_dtype(array: np.ndarray) -> np.ndarray:
    """``array`` in the smallest integer type that holds it exactly, or unchanged (floats with fractions)."""
    if array.dtype.kind not in "fiub" or array.size == 0:
        return array
    if array.dtype.kind == "f" and not (np.isfinite(array).all() and (np.floor(array) == array).all()):
        return array
    low, high = float(array.min()), float(array.max())
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return array.astype(dtype)
    return array


def dataset_ending(source_ending: str) -> str:
    """The ending converted files get: the source's, unless it is re-encoded (``.gif`` -> ``.png``, ...)."""
    return REENCODED_ENDING.get(source_ending, source_ending)


# ----- running --------------------------------------------------------------------------------------
def run_cases(fn: Callable[[T], R], jobs: Sequence[T], num_workers: int, reporter: ProgressReporter | None,
              stage: str, describe: Callable[[T], str] = str) -> list[tuple[T, R]]:
    """Run ``fn`` on every job in the worker pool, emitting a ``case`` event per finished job."""
    results = []
    total = len(jobs)
    for index, (job, result) in enumerate(run_parallel(fn, jobs, num_workers, describe=describe), start=1):
        results.append((job, result))
        if reporter is not None:
            reporter.emit("case", stage=stage, case=describe(job), index=index, total=total)
    return results


def summarise(results: Iterable[FilesDone]) -> tuple[int, int]:
    """Total files copied and written."""
    copied = written = 0
    for done in results:
        copied += done.copied
        written += done.written
    return copied, written
