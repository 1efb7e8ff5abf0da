"""``verify``'s checks of a raw dataset's files, before any is read: which declared files exist, and what is
missing, extra, unmatched or stray. Built on the one listing of cases,
:func:`~AutoSegNetLib.dataset.listing.list_cases`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.dataset.listing import (
    Case,
    channel_file_name,
    channel_file_pattern,
    label_file_name,
    list_cases,
)
from AutoSegNetLib.dataset.problems import Problem, problem, relative_name


@dataclass
class Listing:
    """The cases worth reading (their files that exist and fit) plus the problems seen while listing.

    ``training``: ``{case: (channel files, label file or None when missing)}`` of the cases with at least one usable
    channel file, sorted by case; ``test``: ``{case: channel files}``; ``num_listed``: the training cases declared.
    """

    training: dict[str, tuple[tuple[Path, ...], Path | None]] = field(default_factory=dict)
    num_listed: int = 0
    test: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def list_dataset(folder: Path, dj: DatasetJson, multi_channel_files: bool) -> Listing:
    """Check the cases of the dataset in ``folder`` (:func:`list_cases`) against the files there and report missing,
    extra and stray files. ``multi_channel_files``: one file may hold several channels (RGB images), so files are
    not counted against ``channel_names`` here."""
    cases = list_cases(folder, dj)
    listing = Listing()
    if dj.dataset is not None:
        _check_explicit(folder, dj, multi_channel_files, cases.training, listing)
    else:
        _check_training_folders(folder, dj, multi_channel_files, cases.training, listing)
    listing.test = _check_images(folder, "imagesTs", dj, multi_channel_files, cases.test, listing.problems)
    listing.num_listed = len(cases.training) if dj.dataset is not None else len(listing.training)
    return listing


def _check_training_folders(folder: Path, dj: DatasetJson, multi_channel_files: bool, cases: list[Case],
                            listing: Listing) -> None:
    for sub in ("imagesTr", "labelsTr"):
        if not (folder / sub).is_dir():
            listing.problems.append(problem("missing_folder", f"{sub}/ does not exist", file=sub))
    images = _check_images(folder, "imagesTr", dj, multi_channel_files, cases, listing.problems)
    labels = _label_files(folder, dj, listing.problems)
    for case, files in images.items():
        label = labels.get(case)
        if label is None:
            listing.problems.append(problem("missing_label", f"no labelsTr/{label_file_name(case, dj.file_ending)}",
                                            case, relative_name(files[0], folder)))
        listing.training[case] = (files, label)
    for case in sorted(set(labels) - set(images)):
        listing.problems.append(problem("label_without_image", "no imagesTr/"
                                        f"{channel_file_name(case, 0, dj.file_ending)}", case,
                                        relative_name(labels[case], folder)))


def _check_explicit(folder: Path, dj: DatasetJson, multi_channel_files: bool, cases: list[Case],
                    listing: Listing) -> None:
    for case in cases:
        if not multi_channel_files and len(case.images) != dj.num_channels:
            code = "missing_channel" if len(case.images) < dj.num_channels else "extra_channel"
            listing.problems.append(problem(code, f"dataset.json's 'dataset' lists {len(case.images)} image file(s); "
                                            f"channel_names declares {dj.num_channels}", case.name))
        for index, path in enumerate(case.images):
            if not path.is_file():
                listing.problems.append(problem("missing_channel", f"channel {index} listed in dataset.json's "
                                                "'dataset' does not exist", case.name, relative_name(path, folder)))
        label = case.label
        if label is None:
            listing.problems.append(problem("missing_label", "dataset.json's 'dataset' lists no label", case.name))
        elif not label.is_file():
            listing.problems.append(problem("missing_label", "label listed in dataset.json's 'dataset' does not "
                                            "exist", case.name, relative_name(label, folder)))
            label = None
        present = tuple(p for p in case.images if p.is_file())
        if present:
            listing.training[case.name] = (present, label)


def _check_images(folder: Path, sub: str, dj: DatasetJson, multi_channel_files: bool, cases: list[Case],
                  found: list[Problem]) -> dict[str, tuple[Path, ...]]:
    """``{case: channel files}`` of ``cases`` (listed from ``folder/sub``), reporting gaps, extra channels and stray
    files (anything else there, folders included)."""
    listed = {path for case in cases for path in case.images}
    for path in _entries(folder / sub):
        if path not in listed or not path.is_file():
            found.append(problem("stray_file", _stray_reason(path, dj, f"{{case}}_{{CCCC}}{dj.file_ending}"),
                                 file=relative_name(path, folder)))
    pattern = channel_file_pattern(dj.file_ending)
    usable = {}
    for case in cases:
        channels = {int(pattern.match(p.name).group(2)): p for p in case.images if p.is_file()}
        kept = _check_channels(folder, sub, dj, multi_channel_files, case.name, channels, found)
        if kept:
            usable[case.name] = kept
    return usable


def _check_channels(folder: Path, sub: str, dj: DatasetJson, multi_channel_files: bool, case: str,
                    channels: dict[int, Path], found: list[Problem]) -> tuple[Path, ...]:
    """Report missing and extra channel files of ``case``; returns those of the declared channels in order."""
    if not channels:
        return ()
    expected = range(max(channels) + 1) if multi_channel_files else range(dj.num_channels)
    for index in sorted(set(expected) - set(channels)):
        if index < dj.num_channels:
            found.append(problem("missing_channel", f"no {sub}/{channel_file_name(case, index, dj.file_ending)} "
                                 f"(channel {index}: {dj.channel_names[str(index)]})", case,
                                 relative_name(channels[min(channels)], folder)))
    for index in sorted(i for i in channels if i >= dj.num_channels):
        found.append(problem("extra_channel", f"channel index {index} but channel_names declares "
                             f"{dj.num_channels} channel(s)", case, relative_name(channels[index], folder)))
    return tuple(channels[i] for i in sorted(channels) if i < dj.num_channels)


def _label_files(folder: Path, dj: DatasetJson, found: list[Problem]) -> dict[str, Path]:
    labels = {}
    for path in _entries(folder / "labelsTr"):
        if not path.is_file() or path.name.startswith(".") or not path.name.endswith(dj.file_ending):
            found.append(problem("stray_file", _stray_reason(path, dj, f"{{case}}{dj.file_ending}"),
                                 file=relative_name(path, folder)))
            continue
        labels[path.name[: -len(dj.file_ending)]] = path
    return labels


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _stray_reason(path: Path, dj: DatasetJson, expected: str) -> str:
    if path.is_dir():
        return f"a folder where only files named {expected} belong; it is ignored"
    if path.name.startswith("."):
        return "a hidden file; it is ignored"
    return f"not named {expected} (file_ending is {dj.file_ending!r}); it is ignored"
