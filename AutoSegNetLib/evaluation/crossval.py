"""Cross-validation predictions of a model folder (``fold_<k>/validation/``) paired with their references.

Training predicts each fold's held-out cases into ``fold_<k>/validation/<case><ending>`` (and, for ensembles,
``<case>.npz`` + ``<case>.json``, see :mod:`AutoSegNetLib.inference.outputs`). References are the raw
dataset's label files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from AutoSegNetLib.dataset.raw import RawDataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation.evaluate import CasePair, label_map_files
from AutoSegNetLib.inference.outputs import probability_cases
from AutoSegNetLib.layout import validation_folder

DEFAULT_FOLDS = ("0", "1", "2", "3", "4")


def reference_files(raw_dataset: Path) -> dict[str, Path]:
    """``{case: label file}`` of the raw dataset's training cases."""
    return {case.name: case.label for case in RawDataset.open(raw_dataset).training_cases() if case.label is not None}


def crossval_pairs(
    model_folder: Path, folds: Sequence[str], references: dict[str, Path], ending: str
) -> list[CasePair]:
    """Every validation prediction of ``folds`` with its reference; errors name what is missing."""
    pairs = []
    for fold in folds:
        folder = validation_folder(model_folder, fold)
        if not folder.is_dir():
            raise AutoSegNetError(
                f"{folder} does not exist: fold {fold} of {Path(model_folder).name} has no cross-validation "
                "predictions. Finish training that fold (training predicts its validation cases at the end)."
            )
        for case, prediction in label_map_files(folder, ending):
            if case not in references:
                raise AutoSegNetError(f"{prediction}: case {case!r} has no label file in the raw dataset.")
            pairs.append(CasePair(case, references[case], prediction))
    names = [p.case for p in pairs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise AutoSegNetError(f"Cases {duplicated[:5]} are validation cases of several folds of {model_folder}.")
    return pairs


def has_probabilities(model_folder: Path, folds: Sequence[str], cases: Sequence[str]) -> bool:
    """True if every fold's validation folder stores probabilities for all of its cases in ``cases``."""
    stored: set[str] = set()
    for fold in folds:
        stored.update(probability_cases(validation_folder(model_folder, fold)))
    return set(cases) <= stored


def complete_folds(model_folder: Path, folds: Sequence[str]) -> bool:
    """True if every fold has a validation folder."""
    return all(validation_folder(model_folder, fold).is_dir() for fold in folds)
