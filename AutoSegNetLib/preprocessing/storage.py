"""On-disk format of preprocessed cases, read by training (patches) and written by preprocessing.

One folder per configuration (``preprocessed/DatasetXXX/<data_identifier>/``) holding, per case:
- ``<case>.npy``: image data ``(C, Z, Y, X)`` float32 (transposed axis order, target spacing);
- ``<case>_seg.npy``: label map ``(1, Z, Y, X)`` int16, -1 outside the non-zero crop region;
- ``<case>.json``: properties (original geometry, crop box, shapes, class locations, input hashes).
Plain ``.npy`` files are opened memory-mapped, so a training patch reads only the bytes it needs.
Every file is written atomically; the properties file is written last and marks a case as complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.utils.atomic import atomic_path, read_json, write_json


def save_case(folder: Path, name: str, data: np.ndarray, seg: np.ndarray | None, properties: dict[str, Any]) -> None:
    """Write one preprocessed case (data ``(C, Z, Y, X)``, seg ``(1, Z, Y, X)``) atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{name}.npy", suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(data, dtype=np.float32))
    if seg is not None:
        with atomic_path(folder / f"{name}_seg.npy", suffix=".npy") as tmp:
            np.save(tmp, np.ascontiguousarray(seg, dtype=np.int16))
    write_json(folder / f"{name}.json", properties)


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
    def case_names(self) -> list[str]:
        """Names of complete cases (those whose properties file exists), sorted."""
        return sorted(p.stem for p in self.folder.glob("*.json") if (self.folder / f"{p.stem}.npy").is_file())

    def load_case(self, name: str, mmap: bool = True) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """``(data (C, Z, Y, X) float32, seg (1, Z, Y, X) int16 or None, properties)``."""
        mode = "r" if mmap else None
        data_path = self.folder / f"{name}.npy"
        if not data_path.is_file():
            raise AutoSegNetError(f"Preprocessed case {name!r} not found in {self.folder}.")
        data = np.load(data_path, mmap_mode=mode)
        seg_path = self.folder / f"{name}_seg.npy"
        seg = np.load(seg_path, mmap_mode=mode) if seg_path.is_file() else None
        return data, seg, self.load_properties(name)

    def load_properties(self, name: str) -> dict[str, Any]:
        return read_json(self.folder / f"{name}.json")
