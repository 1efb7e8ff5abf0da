"""Cross-validation splits: ``preprocessed/<Dataset>/splits_final.json``, checked against the current cases.

The default splits equal nnU-Net's: the sorted case names are shuffled by ``KFold(n_splits=5, shuffle=True,
random_state=12345)`` (re-implemented here without scikit-learn, same permutation), each fold's ``train`` and
``val`` lists in sorted order. The file stays nnU-Net's format; :data:`SPLITS_RECORD` beside it records, for the
file's current content, whether it was written automatically and for which cases.

- Automatic splits (recorded as such, or equal to the default splits of the cases they name: files of older
  versions) follow the dataset: when cases were added or removed they are written again, with a warning that
  folds trained on the old splits are not comparable with new ones.
- A file the user wrote (any number of folds; cases may be left out on purpose) is respected; it is refused when
  it names cases that are not preprocessed, and when cases were added or removed since it was first used (the
  error lists them), so new cases are never left out silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError, DatasetFormatError
from AutoSegNetLib.utils.atomic import read_json, write_json

log = logging.getLogger(__name__)

SPLITS_FILE = "splits_final.json"
#: What the splits file was written for: ``{"splits_hash", "automatic", "cases"}``.
SPLITS_RECORD = ".splits_final.record.json"
SPLITS_RECORD_FORMAT = "autosegnet-splits-record"
DEFAULT_FOLDS = 5
SPLIT_SEED = 12345
_SHOWN = 10


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


@dataclass(frozen=True)
class SplitsRecord:
    """For one content of the splits file (``splits_hash``): written automatically or not, and for which cases."""

    splits_hash: str
    automatic: bool
    cases: tuple[str, ...]

    def save(self, folder: Path) -> None:
        write_json(Path(folder) / SPLITS_RECORD, {"format": SPLITS_RECORD_FORMAT, "version": 1,
                                                  "splits_hash": self.splits_hash, "automatic": self.automatic,
                                                  "cases": list(self.cases)})

    @classmethod
    def load(cls, folder: Path, splits: list[dict]) -> SplitsRecord | None:
        """The record of exactly these ``splits``; None when missing, unreadable or made for another content."""
        try:
            data = json.loads((Path(folder) / SPLITS_RECORD).read_text())
            record = cls(str(data["splits_hash"]), bool(data["automatic"]), tuple(str(c) for c in data["cases"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        current = data.get("format") == SPLITS_RECORD_FORMAT and record.splits_hash == splits_hash(splits)
        return record if current else None


def splits_hash(splits: list[dict]) -> str:
    """Hash of the folds' content (independent of the file's formatting)."""
    return hashlib.blake2b(json.dumps(splits, sort_keys=True).encode(), digest_size=16).hexdigest()


def load_or_create_splits(preprocessed_dataset: Path, case_names: list[str], write: bool = True) -> list[dict]:
    """The splits of ``splits_final.json`` for the current ``case_names``: the default 5-fold splits are written
    when there is no file or when automatic splits no longer match the cases; a user's file is checked (see the
    module docstring). With ``write`` False nothing is written (DDP ranks other than 0)."""
    folder = Path(preprocessed_dataset)
    path = folder / SPLITS_FILE
    names = sorted(case_names)
    if not path.is_file():
        return _write_default(folder, names, write)
    splits = _checked(read_json(path), path)
    named = sorted({c for fold in splits for part in ("train", "val") for c in fold[part]})
    record = SplitsRecord.load(folder, splits)
    if _is_automatic(record, splits, named):
        if named == names:
            if record is None and write:
                SplitsRecord(splits_hash(splits), True, tuple(names)).save(folder)
            return splits
        log.warning("%s was written automatically for other cases (%s); writing new default splits for the current "
                    "%d cases. Folds trained on the old splits are not comparable with the new ones: train them again.",
                    path, _difference(named, names), len(names))
        return _write_default(folder, names, write)
    return _users_splits(splits, named, names, record, path, write)


def _write_default(folder: Path, names: list[str], write: bool) -> list[dict]:
    splits = kfold_splits(names)
    if write:
        write_json(folder / SPLITS_FILE, splits)
        SplitsRecord(splits_hash(splits), True, tuple(names)).save(folder)
        log.info("Wrote %d-fold cross-validation splits to %s", len(splits), folder / SPLITS_FILE)
    return splits


def _is_automatic(record: SplitsRecord | None, splits: list[dict], named: list[str]) -> bool:
    """As recorded; without a record (older versions), when ``splits`` are the default splits of the cases they name."""
    if record is not None:
        return record.automatic
    return len(named) >= 2 and splits == kfold_splits(named)


def _users_splits(splits: list[dict], named: list[str], names: list[str], record: SplitsRecord | None, path: Path,
                  write: bool) -> list[dict]:
    """Check a splits file the user wrote against the current cases; record the cases when it is first used."""
    for index, fold in enumerate(splits):
        for part in ("train", "val"):
            unknown = sorted(set(fold[part]) - set(names))
            if unknown:
                raise DatasetFormatError(
                    f"{path}: fold {index} {part!r} names cases that are not preprocessed: {_shown(unknown)} (the "
                    f"dataset has {len(names)} cases now). Fix the file (or delete it to get the default splits) or "
                    "preprocess those cases."
                )
    if record is not None and list(record.cases) != names:
        raise DatasetFormatError(
            f"{path} was written by hand when the dataset had {len(record.cases)} cases; since then "
            f"{_difference(list(record.cases), names, 'since')}. Add the new cases to its folds (or delete it to get "
            "the default splits), then train again; until then they would silently be left out."
        )
    if record is None:
        unused = sorted(set(names) - set(named))
        if unused:
            log.warning("%s (written by hand) uses %d of the %d cases; never used: %s.", path, len(named), len(names),
                        _shown(unused))
        if write:
            SplitsRecord(splits_hash(splits), False, tuple(names)).save(path.parent)
    return splits


def _difference(before: list[str], now: list[str], word: str = "") -> str:
    added, removed = sorted(set(now) - set(before)), sorted(set(before) - set(now))
    suffix = f" {word}" if word else ""
    parts = [f"added{suffix}: {_shown(added)}" if added else "", f"removed{suffix}: {_shown(removed)}" if removed
             else ""]
    return "; ".join(part for part in parts if part)


def _shown(cases: list[str]) -> str:
    return ", ".join(cases[:_SHOWN]) + (f", ... ({len(cases) - _SHOWN} more)" if len(cases) > _SHOWN else "")


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


def _checked(data: object, path: Path) -> list[dict]:
    """The folds of a splits file, after checking their structure."""
    if not isinstance(data, list) or not data:
        raise DatasetFormatError(f"{path}: expected a list of folds like [{{\"train\": [...], \"val\": [...]}}].")
    for index, fold in enumerate(data):
        if not isinstance(fold, dict) or set(fold) != {"train", "val"}:
            raise DatasetFormatError(f"{path}: fold {index} must have exactly the keys 'train' and 'val'.")
        for part in ("train", "val"):
            if not isinstance(fold[part], list) or not all(isinstance(c, str) for c in fold[part]):
                raise DatasetFormatError(f"{path}: fold {index} {part!r} must be a list of case names.")
        if not fold["train"]:
            raise DatasetFormatError(f"{path}: fold {index} has no training cases.")
    return data
