"""Cross-validation splits: ``preprocessed/<Dataset>/splits_final.json``, written once and then respected.

The default splits equal nnU-Net's: the sorted case names are shuffled by ``KFold(n_splits=5, shuffle=True,
random_state=12345)`` (re-implemented here without scikit-learn, same permutation), each fold's ``train`` and
``val`` lists in sorted order. A file the user wrote (any number of folds) is used as it is, after checking
that it names existing cases.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError, DatasetFormatError
from AutoSegNetLib.utils.atomic import read_json, write_json

log = logging.getLogger(__name__)

SPLITS_FILE = "splits_final.json"
DEFAULT_FOLDS = 5
SPLIT_SEED = 12345


def kfold_splits(case_names: list[str], n_folds: int = DEFAULT_FOLDS, seed: int = SPLIT_SEED) -> list[dict]:
    """``[{"train": [...], "val": [...]}, ...]`` like scikit-learn's shuffled ``KFold`` over the sorted names."""
    names = sorted(case_names)
    if len(names) < 2:
        raise AutoSegNetError(
            f"Cross-validation needs at least 2 training cases, found {len(names)}. Add cases or train fold 'all'."
        )
    n_folds = min(n_folds, len(names))
    order = np.arange(len(names))
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_folds, len(names) // n_folds)
    sizes[: len(names) % n_folds] += 1
    splits, start = [], 0
    for size in sizes:
        val = np.zeros(len(names), dtype=bool)
        val[order[start:start + size]] = True
        start += size
        splits.append({"train": [n for n, v in zip(names, val) if not v], "val": [n for n, v in zip(names, val) if v]})
    return splits


def load_or_create_splits(preprocessed_dataset: Path, case_names: list[str], write: bool = True) -> list[dict]:
    """The splits of ``splits_final.json``, creating the default 5-fold file first if there is none."""
    path = Path(preprocessed_dataset) / SPLITS_FILE
    if path.is_file():
        return _checked(read_json(path), set(case_names), path)
    splits = kfold_splits(case_names)
    if write:
        write_json(path, splits)
        log.info("Wrote %d-fold cross-validation splits to %s", len(splits), path)
    return splits


def cases_for_fold(splits: list[dict], fold: int | str, case_names: list[str]) -> tuple[list[str], list[str]]:
    """``(train_cases, val_cases)`` for ``fold`` (an index into ``splits``, or ``"all"``: every case trains
    and validates)."""
    if str(fold) == "all":
        names = sorted(case_names)
        return names, names
    index = int(fold)
    if not 0 <= index < len(splits):
        raise AutoSegNetError(
            f"Fold {fold} does not exist: {SPLITS_FILE} has {len(splits)} folds (0..{len(splits) - 1}). "
            "Choose one of them or 'all'."
        )
    return list(splits[index]["train"]), list(splits[index]["val"])


def _checked(data: object, known: set[str], path: Path) -> list[dict]:
    if not isinstance(data, list) or not data:
        raise DatasetFormatError(f"{path}: expected a list of folds like [{{\"train\": [...], \"val\": [...]}}].")
    for index, fold in enumerate(data):
        if not isinstance(fold, dict) or set(fold) != {"train", "val"}:
            raise DatasetFormatError(f"{path}: fold {index} must have exactly the keys 'train' and 'val'.")
        for part in ("train", "val"):
            missing = [c for c in fold[part] if c not in known]
            if missing:
                raise DatasetFormatError(
                    f"{path}: fold {index} {part!r} names cases that are not preprocessed: {missing[:5]}. "
                    "Fix the file (or delete it to get the default splits) or preprocess those cases."
                )
        if not fold["train"]:
            raise DatasetFormatError(f"{path}: fold {index} has no training cases.")
    return data
