"""Which files make up the cases of a raw dataset: the one listing behind :class:`RawDataset` and ``verify``.

File names follow nnU-Net: images ``imagesTr/{case}_{CCCC}{ending}`` (``CCCC``: the channel index), labels
``labelsTr/{case}{ending}``, test images ``imagesTs/{case}_{CCCC}{ending}``; or explicit lists in dataset.json's
``dataset`` field (paths relative to the dataset folder, or absolute). Hidden files (``.DS_Store``, macOS
``._case_0000.nii.gz`` resource forks) never belong to a case.

:func:`list_cases` lists what the folders and dataset.json declare, as they are; what is missing, extra or stray
is ``verify``'s business (:mod:`AutoSegNetLib.dataset.verify_layout`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetLib.dataset.dataset_json import DatasetJson


@dataclass(frozen=True)
class Case:
    """One case: its channel image files (index order) and its label file (None for test cases)."""

    name: str
    images: tuple[Path, ...]
    label: Path | None


@dataclass(frozen=True)
class CaseListing:
    """The training and test cases of a raw dataset, each sorted by name."""

    training: list[Case]
    test: list[Case]


def channel_file_pattern(ending: str) -> re.Pattern[str]:
    """Matches ``{case}_{CCCC}{ending}``; group 1 is the case, group 2 the channel index."""
    return re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + "$")


def channel_file_name(case: str, channel: int, ending: str) -> str:
    """``{case}_{CCCC}{ending}``: the file of channel ``channel`` of ``case``."""
    return f"{case}_{channel:04d}{ending}"


def label_file_name(case: str, ending: str) -> str:
    """``{case}{ending}``: the label file of ``case``."""
    return f"{case}{ending}"


def group_channel_files(folder: Path, ending: str) -> dict[str, dict[int, Path]]:
    """``{case: {channel index: path}}`` for files named ``{case}_{CCCC}{ending}`` in ``folder``.

    Hidden files (``.DS_Store``, macOS ``._case_0000.nii.gz`` resource forks) are skipped.
    """
    pattern = channel_file_pattern(ending)
    grouped: dict[str, dict[int, Path]] = {}
    if not folder.is_dir():
        return grouped
    for path in folder.iterdir():
        match = pattern.match(path.name)
        if match and not path.name.startswith("."):
            grouped.setdefault(match.group(1), {})[int(match.group(2))] = path
    return grouped


def list_cases(folder: Path, dj: DatasetJson) -> CaseListing:
    """The cases of the raw dataset in ``folder``: training cases from dataset.json's ``dataset`` (every entry, its
    paths resolved) or from ``imagesTr`` with their label ``labelsTr/{case}{ending}``; test cases from ``imagesTs``
    (empty when absent). Listed files need not exist: this only reads names."""
    if dj.dataset is not None:
        training = [Case(name, tuple(_listed_path(folder, p) for p in files.images),
                         _listed_path(folder, files.label) if files.label else None)
                    for name, files in sorted(dj.dataset.items())]
    else:
        labels = folder / "labelsTr"
        training = [Case(name, images, labels / label_file_name(name, dj.file_ending))
                    for name, images in _cases_in(folder / "imagesTr", dj.file_ending)]
    test = [Case(name, images, None) for name, images in _cases_in(folder / "imagesTs", dj.file_ending)]
    return CaseListing(training, test)


def _listed_path(folder: Path, path: str) -> Path:
    """A path from dataset.json's ``dataset``: absolute, or relative to the dataset folder."""
    p = Path(path)
    return p if p.is_absolute() else (folder / p).resolve()


def _cases_in(folder: Path, ending: str) -> list[tuple[str, tuple[Path, ...]]]:
    """``(case, channel files in index order)`` of the channel files in ``folder``, sorted by case."""
    return [(name, tuple(channels[i] for i in sorted(channels)))
            for name, channels in sorted(group_channel_files(folder, ending).items())]
