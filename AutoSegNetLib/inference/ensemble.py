"""Ensemble prediction folders, case by case, into one folder of label maps.

Two ways to combine (``vote``):

- ``"soft"`` (default, nnU-Net's ``nnUNetv2_ensemble``): average the stored probabilities, then take the label
  of the highest mean probability. Every folder must hold ``<case>.npz`` + ``<case>.json``
  (``predict --save-probabilities``) for the same cases, predicted with the same labels on the same grid.
- ``"hard"``: majority vote of the label maps ``<case><ending>`` themselves (no probabilities needed, so it also
  combines folders predicted without them, or by other tools). A tie goes to the lowest of the tied label values:
  the result does not depend on the order of the folders, and it matches the arg-max rule of
  :func:`~AutoSegNetLib.inference.labels.probabilities_to_segmentation` (ties go to the lower label). With two
  folders this keeps a label only where both agree (elsewhere the lower value, usually background).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, file_ending, io_for, registered_ios
from AutoSegNetLib.inference.labels import label_dtype, probabilities_to_segmentation
from AutoSegNetLib.inference.outputs import (
    StoredProbabilities,
    probability_cases,
    read_probabilities,
    uncertainty_path,
    write_probabilities,
    write_segmentation,
)
from AutoSegNetLib.progress import ProgressReporter

#: How folders are combined: ``soft`` averages probabilities, ``hard`` is a majority vote of label maps.
VOTES = ("soft", "hard")


def average_probabilities(stored: Sequence[StoredProbabilities]) -> np.ndarray:
    """Mean probabilities ``(K, Z, Y, X)`` of one case from several folders (checked to be compatible)."""
    first = stored[0]
    total = first.probabilities.astype(np.float32, copy=True)
    for other in stored[1:]:
        if other.probabilities.shape != first.probabilities.shape:
            raise AutoSegNetError(
                f"Case {first.case}: probabilities of shape {other.probabilities.shape} and "
                f"{first.probabilities.shape} cannot be averaged (different models' grids or labels)."
            )
        if other.label_info != first.label_info:
            raise AutoSegNetError(f"Case {first.case}: the folders were predicted with different labels.")
        total += other.probabilities
    total /= len(stored)
    return total


def ensemble_case(folders: Sequence[Path], case: str) -> tuple[np.ndarray, StoredProbabilities]:
    """Averaged probabilities of ``case`` and the first folder's stored description (geometry, labels)."""
    stored = [read_probabilities(folder, case) for folder in folders]
    return average_probabilities(stored), stored[0]


def majority_vote(label_maps: Sequence[np.ndarray]) -> np.ndarray:
    """Per voxel, the label value given by most of ``label_maps`` (each ``(Z, Y, X)``, the same shape).

    A tie goes to the lowest of the tied values (see the module docstring). Returns uint8, or uint16 for values
    above 255.
    """
    if not label_maps:
        raise AutoSegNetError("A majority vote needs at least one label map.")
    stack = np.stack([np.asarray(m) for m in label_maps])
    values = np.unique(stack)  # ascending: a later value must have strictly more votes to win
    if values.size and values[0] < 0:
        raise AutoSegNetError(f"Label maps hold negative values ({int(values[0])}); label values are 0, 1, 2, ...")
    best_value = np.zeros(stack.shape[1:], dtype=label_dtype(int(values[-1]) if values.size else 0))
    best_count = np.zeros(stack.shape[1:], dtype=np.int32)
    for value in values:
        count = np.count_nonzero(stack == value, axis=0)
        wins = count > best_count
        best_value[wins] = value
        best_count[wins] = count[wins]
    return best_value


def label_map_files(folder: Path) -> tuple[dict[str, Path], str]:
    """The label maps ``<case><ending>`` in ``folder`` (uncertainty maps left out) and the ending, the most common
    image ending there."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AutoSegNetError(f"{folder} is not a folder.")
    supported = {e for cls in registered_ios().values() for e in cls.endings}
    by_ending: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        ending = file_ending(path)
        if path.is_file() and ending in supported and not path.name.startswith("."):
            by_ending.setdefault(ending, {})[path.name[: -len(ending)]] = path
    if not by_ending:
        raise AutoSegNetError(f"{folder} holds no label maps (supported endings: {', '.join(sorted(supported))}).")
    ending = max(by_ending, key=lambda e: len(by_ending[e]))
    files = by_ending[ending]
    uncertainty = {uncertainty_path(folder, case, ending) for case in files}
    return {case: path for case, path in files.items() if path not in uncertainty}, ending


def vote_case(paths: Sequence[Path], case: str, ending: str) -> tuple[np.ndarray, Geometry]:
    """Majority vote of one case's label maps ``paths`` (checked to share shape and geometry) and its geometry."""
    io = io_for(ending)
    maps, geometries = [], []
    for path in paths:
        segmentation, geometry = io.read_seg(path)
        maps.append(np.asarray(segmentation))
        geometries.append(geometry)
    for path, segmentation, geometry in zip(paths[1:], maps[1:], geometries[1:]):
        if segmentation.shape != maps[0].shape:
            raise AutoSegNetError(f"Case {case}: {path} has shape {segmentation.shape}, {paths[0]} has "
                                  f"{maps[0].shape}; label maps of different images cannot be voted on.")
        differences = geometries[0].differences(geometry)
        if differences:
            raise AutoSegNetError(f"Case {case}: {path} and {paths[0]} differ in geometry ({'; '.join(differences)}); "
                                  "were they predicted from the same image?")
    return majority_vote(maps), geometries[0]


def ensemble_folders(
    folders: Sequence[str | Path],
    output_folder: str | Path,
    save_probabilities: bool = False,
    reporter: ProgressReporter | None = None,
    *,
    vote: str = "soft",
    cases: Sequence[str] | None = None,
) -> list[Path]:
    """Combine the cases of ``folders`` (``vote``: ``"soft"`` or ``"hard"``, see the module) and write label maps
    to ``output_folder``; returns their paths.

    ``cases``: only these (each must be in every folder); default: every case, which every folder must have.
    ``save_probabilities`` also writes the averaged probabilities (soft voting only).
    """
    if vote not in VOTES:
        raise AutoSegNetError(f"Unknown vote {vote!r}; use one of {', '.join(VOTES)}.")
    if vote == "hard" and save_probabilities:
        raise AutoSegNetError("A hard (majority) vote makes no probabilities to save; drop --save-probabilities or "
                              "ensemble with --vote soft.")
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise AutoSegNetError("An ensemble needs at least two prediction folders.")
    if vote == "hard":
        return _vote_folders(folders, Path(output_folder), cases, reporter)
    case_sets = [set(probability_cases(folder)) for folder in folders]
    for folder, found in zip(folders, case_sets):
        if not found:
            raise AutoSegNetError(f"{folder} holds no probabilities; predict with --save-probabilities.")
    chosen = _cases_in_every_folder(folders, case_sets, cases, "probabilities")
    output_folder = Path(output_folder)
    written = []
    for index, case in enumerate(chosen):
        probabilities, description = ensemble_case(folders, case)
        segmentation = probabilities_to_segmentation(probabilities, description.label_info.regions_class_order)
        written.append(write_segmentation(output_folder, case, segmentation, description.geometry,
                                          description.file_ending))
        if save_probabilities:
            write_probabilities(output_folder, case, probabilities, description.geometry, description.file_ending,
                                description.label_info)
        _report(reporter, case, index, len(chosen))
    return written


def _vote_folders(folders: list[Path], output_folder: Path, cases: Sequence[str] | None,
                  reporter: ProgressReporter | None) -> list[Path]:
    listed = [label_map_files(folder) for folder in folders]
    endings = {ending for _, ending in listed}
    if len(endings) > 1:
        raise AutoSegNetError(f"The folders hold label maps of different file types ({', '.join(sorted(endings))}); "
                              "vote on folders predicted from the same images.")
    ending = endings.pop()
    chosen = _cases_in_every_folder(folders, [set(files) for files, _ in listed], cases, "label maps")
    written = []
    for index, case in enumerate(chosen):
        segmentation, geometry = vote_case([files[case] for files, _ in listed], case, ending)
        written.append(write_segmentation(output_folder, case, segmentation, geometry, ending))
        _report(reporter, case, index, len(chosen))
    return written


def _cases_in_every_folder(folders: list[Path], case_sets: list[set[str]], cases: Sequence[str] | None,
                           what: str) -> list[str]:
    """``cases`` (or every case), refused unless each folder has them all."""
    wanted = set(cases) if cases is not None else set.union(*case_sets)
    for folder, found in zip(folders, case_sets):
        missing = sorted(wanted - found)
        if missing:
            raise AutoSegNetError(f"{folder} has no {what} for cases {missing[:5]}"
                                  f"{' ...' if len(missing) > 5 else ''}; every folder needs every case.")
    return sorted(wanted)


def _report(reporter: ProgressReporter | None, case: str, index: int, total: int) -> None:
    if reporter is not None:
        reporter.emit("case", stage="ensemble", case=case, index=index + 1, total=total)
