"""A raw dataset folder (``DatasetXXX_Name/imagesTr``, ``labelsTr``, ``imagesTs``, ``dataset.json``).

Lists cases with their channel files through :func:`~AutoSegNetLib.dataset.listing.list_cases`, the listing
``verify`` checks (file names follow nnU-Net: images ``{case}_{CCCC}{ending}``, labels ``{case}{ending}``; or
explicit lists in dataset.json's ``dataset`` field).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.dataset.listing import Case, group_channel_files, list_cases
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, ImageIO, io_for
from AutoSegNetLib.layout import DATASET_JSON_FILE

#: ``Case`` and ``group_channel_files`` are defined in :mod:`.listing`; importers of them from here keep working.
__all__ = ["DATASET_FOLDER_PATTERN", "Case", "RawDataset", "dataset_folder_name", "group_channel_files"]

DATASET_FOLDER_PATTERN = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9_\-]+)$")


@dataclass
class RawDataset:
    """A raw dataset folder with its parsed dataset.json."""

    folder: Path
    dataset_json: DatasetJson

    @classmethod
    def open(cls, folder: str | Path) -> RawDataset:
        folder = Path(folder)
        if not (folder / DATASET_JSON_FILE).is_file():
            raise AutoSegNetError(f"{folder} is not a raw dataset: it has no dataset.json.")
        return cls(folder, DatasetJson.load(folder / DATASET_JSON_FILE))

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def io(self) -> ImageIO:
        """The reader/writer for this dataset's files."""
        return io_for(self.dataset_json.file_ending, self.dataset_json.overwrite_image_reader_writer)

    def training_cases(self) -> list[Case]:
        """All training cases, sorted by name, from ``dataset`` in dataset.json or from ``imagesTr``."""
        return list_cases(self.folder, self.dataset_json).training

    def test_cases(self) -> list[Case]:
        """Cases in ``imagesTs`` (no labels), sorted by name; empty if the folder is absent."""
        return list_cases(self.folder, self.dataset_json).test

    def read_case(self, case: Case) -> tuple[np.ndarray, np.ndarray | None, Geometry]:
        """``(C, Z, Y, X)`` float32 image, ``(Z, Y, X)`` label (or None) and the image geometry."""
        image, seg, geometry, _ = self.read_case_and_label_geometry(case)
        return image, seg, geometry

    def read_case_and_label_geometry(self, case: Case
                                     ) -> tuple[np.ndarray, np.ndarray | None, Geometry, Geometry | None]:
        """:meth:`read_case` plus the label file's own geometry (None without a label).

        A file that cannot be read (missing, corrupt, 4D, ...) gives an error naming the case and the file.
        """
        try:
            image, geometry = self.io.read_images(case.images)
            seg, label_geometry = self.io.read_seg(case.label) if case.label is not None else (None, None)
        except AutoSegNetError as exc:
            raise AutoSegNetError(f"Case {case.name!r}: {exc}") from exc
        return image, seg, geometry, label_geometry


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset004_Hippocampus`` from 4 and ``Hippocampus``."""
    if not 0 < dataset_id < 1000:
        raise AutoSegNetError(f"Dataset IDs are 1..999, got {dataset_id}.")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise AutoSegNetError(f"Dataset name {name!r} may only contain letters, digits, '_' and '-'.")
    return f"Dataset{dataset_id:03d}_{name}"
