"""On-disk format of preprocessed cases, read by training (patches) and written by preprocessing.

One folder per configuration (``preprocessed/DatasetXXX/<data_identifier>/``) holding, per case:
- ``<case>.npy``: image data ``(C, Z, Y, X)`` float32 (transposed axis order, target spacing);
- ``<case>_seg.npy``: label map ``(1, Z, Y, X)`` int16, -1 outside the non-zero crop region;
- ``<case>_locations.npy``: sampled foreground positions ``(N, 4)`` int32 ``[c, z, y, x]`` of all classes;
- ``<case>.json``: properties (original geometry, crop box, shapes, input hash, and
  ``class_locations_index`` = ``{key: [start, stop]}`` rows of the locations file).
Plain ``.npy`` files are opened memory-mapped, so a training patch reads only the bytes it needs
(see docs/decisions/0002-preprocessed-storage.md for the measurements behind this choice).
Every file is written atomically; the properties file is written last and marks a case as complete.
While a preprocessing run adds cases to a folder, :data:`INCOMPLETE_MARKER` sits in it; only a run that did all
its work removes it, so a folder left by a stopped, failed or killed run is never taken for a complete one.
``load_case`` returns the properties with ``class_locations`` = ``{key: (n, 4) int32 array}``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.utils.atomic import atomic_path, read_json, write_json

ARRAY_SUFFIXES = (".npy", "_seg.npy", "_locations.npy")
#: File in a configuration folder whose preprocessing has started but not finished (hidden: not a case).
INCOMPLETE_MARKER = ".preprocessing_incomplete"


def mark_incomplete(folder: Path, pending: int) -> None:
    """Mark ``folder`` as being filled (``pending`` cases still to write) until :func:`mark_complete`."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_json(Path(folder) / INCOMPLETE_MARKER, {"pending_cases": pending})


def mark_complete(folder: Path) -> None:
    """Remove the marker of :func:`mark_incomplete` (every case of the run was written)."""
    (Path(folder) / INCOMPLETE_MARKER).unlink(missing_ok=True)


def save_case(folder: Path, name: str, data: np.ndarray, seg: np.ndarray | None, properties: dict[str, Any]) -> None:
    """Write one preprocessed case (data ``(C, Z, Y, X)``, seg ``(1, Z, Y, X)``) atomically.

    ``properties["class_locations"]`` (``{key: (n, 4)}`` arrays or lists), when present, goes to the
    locations file; the properties file keeps the row index.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    properties = dict(properties)
    locations = properties.pop("class_locations", None)
    _save_array(folder / f"{name}.npy", data, np.float32)
    if seg is not None:
        _save_array(folder / f"{name}_seg.npy", seg, np.int16)
    if locations is not None:
        stacked, index = _stack_locations(locations)
        _save_array(folder / f"{name}_locations.npy", stacked, np.int32)
        properties["class_locations_index"] = index
    write_json(folder / f"{name}.json", properties, indent=1)


def link_case(source: Path, folder: Path, name: str, properties: dict[str, Any]) -> None:
    """Give ``folder`` the arrays of case ``name`` already saved in ``source`` (hard links, else copies),
    with its own properties file; used when two configurations preprocess a case identically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    properties = dict(properties)
    properties.pop("class_locations", None)
    for suffix in ARRAY_SUFFIXES:
        src = Path(source) / f"{name}{suffix}"
        if src.is_file():
            with atomic_path(folder / f"{name}{suffix}", suffix=".npy") as tmp:
                tmp.unlink()
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copyfile(src, tmp)
    index = read_json(Path(source) / f"{name}.json").get("class_locations_index")
    if index is not None:
        properties["class_locations_index"] = index
    write_json(folder / f"{name}.json", properties, indent=1)


def remove_case(folder: Path, name: str) -> None:
    """Delete a case (properties first, so a crash never leaves a case that looks complete)."""
    for suffix in (".json", *ARRAY_SUFFIXES):
        path = Path(folder) / f"{name}{suffix}"
        if path.is_file():
            path.unlink()


def _save_array(path: Path, array: np.ndarray, dtype: type) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array, dtype=dtype))


def _stack_locations(locations: dict[str, Any]) -> tuple[np.ndarray, dict[str, list[int]]]:
    arrays, index, start = [], {}, 0
    for key, value in locations.items():
        array = np.asarray(value, dtype=np.int32).reshape(-1, 4)
        arrays.append(array)
        index[str(key)] = [start, start + len(array)]
        start += len(array)
    stacked = np.concatenate(arrays) if arrays else np.zeros((0, 4), dtype=np.int32)
    return stacked, index


@dataclass
class PreprocessedDataset:
    """The preprocessed cases of one configuration; patches are read from memory maps."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if not self.folder.is_dir():
            raise AutoSegNetError(
                f"No preprocessed data at {self.folder}. Run `autosegnet preprocess` (or plan-and-preprocess) first."
            )

    @property
    def is_complete(self) -> bool:
        """False while the folder carries :data:`INCOMPLETE_MARKER` (preprocessing stopped or failed midway)."""
        return not (self.folder / INCOMPLETE_MARKER).exists()

    @property
    def case_names(self) -> list[str]:
        """Names of complete cases (those whose properties file exists), sorted."""
        files = {entry.name for entry in os.scandir(self.folder)}
        names = (n[:-5] for n in files if n.endswith(".json") and not n.startswith("."))
        return sorted(n for n in names if f"{n}.npy" in files)

    def load_case(self, name: str, mmap: bool = True) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """``(data (C, Z, Y, X) float32, seg (1, Z, Y, X) int16 or None, properties)``."""
        mode = "r" if mmap else None
        data_path = self.folder / f"{name}.npy"
        if not data_path.is_file():
            raise AutoSegNetError(f"Preprocessed case {name!r} not found in {self.folder}.")
        data = np.load(data_path, mmap_mode=mode)
        seg_path = self.folder / f"{name}_seg.npy"
        seg = np.load(seg_path, mmap_mode=mode) if seg_path.is_file() else None
        return data, seg, self.load_properties(name, mmap=mmap)

    def load_properties(self, name: str, mmap: bool = True) -> dict[str, Any]:
        """The case's properties; ``class_locations`` maps each key to an ``(n, 4)`` int32 array."""
        properties = read_json(self.folder / f"{name}.json")
        index = properties.get("class_locations_index")
        if index is not None:
            locations = np.load(self.folder / f"{name}_locations.npy", mmap_mode="r" if mmap else None)
            properties["class_locations"] = {key: locations[a:b] for key, (a, b) in index.items()}
        return properties
