"""Ensemble prediction folders: average the stored probabilities of each case, write label maps.

Every folder must hold ``<case>.npz`` + ``<case>.json`` (``predict --save-probabilities``) for the same cases,
predicted with the same labels on the same grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.labels import probabilities_to_segmentation
from AutoSegNetLib.inference.outputs import (
    StoredProbabilities,
    probability_cases,
    read_probabilities,
    write_probabilities,
    write_segmentation,
)
from AutoSegNetLib.progress import ProgressReporter


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


def ensemble_folders(
    folders: Sequence[str | Path],
    output_folder: str | Path,
    save_probabilities: bool = False,
    reporter: ProgressReporter | None = None,
) -> list[Path]:
    """Average the probabilities of the cases all ``folders`` share and write label maps to ``output_folder``."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise AutoSegNetError("An ensemble needs at least two prediction folders.")
    case_sets = [set(probability_cases(folder)) for folder in folders]
    for folder, cases in zip(folders, case_sets):
        if not cases:
            raise AutoSegNetError(f"{folder} holds no probabilities; predict with --save-probabilities.")
    cases = sorted(set.intersection(*case_sets))
    missing = sorted(set.union(*case_sets) - set(cases))
    if missing:
        raise AutoSegNetError(f"Not every folder has probabilities for cases {missing[:5]}; predict them everywhere.")
    output_folder = Path(output_folder)
    written = []
    for index, case in enumerate(cases):
        probabilities, description = ensemble_case(folders, case)
        segmentation = probabilities_to_segmentation(probabilities, description.label_info.regions_class_order)
        written.append(write_segmentation(output_folder, case, segmentation, description.geometry,
                                          description.file_ending))  # fmt: skip
        if save_probabilities:
            write_probabilities(output_folder, case, probabilities, description.geometry, description.file_ending,
                                description.label_info)  # fmt: skip
        if reporter is not None:
            reporter.emit("case", stage="ensemble", case=case, index=index + 1, total=len(cases))
    return written
