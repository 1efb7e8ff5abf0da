"""The record that a configuration folder is complete: ``<folder>/.preprocessing_manifest.json``.

Preprocessing removes it before it changes a folder and writes it only after a run did all its work: the raw
dataset's training cases, each with the content hash of its input files (``input_hash`` of
:mod:`~AutoSegNetLib.preprocessing.incremental`), and the preprocessing settings hash. Training calls
:func:`require_up_to_date`, which refuses a folder that

- carries the incomplete marker of :mod:`~AutoSegNetLib.preprocessing.storage` or has no manifest (a run that
  changed it did not finish),
- was preprocessed with other settings (plans.json or dataset.json labels changed since), or
- no longer matches the raw dataset: cases added, removed, or changed. Changed is decided as the incremental
  preprocessing decides it (unchanged size and mtime are trusted, otherwise the bytes are hashed), so the check
  costs one ``stat`` per file when nothing changed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from AutoSegNetLib.dataset.raw import RawDataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.preprocessing.incremental import FolderState, is_up_to_date
from AutoSegNetLib.preprocessing.storage import PreprocessedDataset
from AutoSegNetLib.utils.atomic import write_json

log = logging.getLogger(__name__)

MANIFEST_FILE = ".preprocessing_manifest.json"
MANIFEST_FORMAT = "autosegnet-preprocessing-manifest"
_SHOWN = 10


@dataclass(frozen=True)
class Manifest:
    """A complete configuration folder: ``{case: input hash}`` of every raw training case and the settings hash."""

    cases: dict[str, str]
    preprocessing_hash: str

    def save(self, folder: Path) -> None:
        write_json(Path(folder) / MANIFEST_FILE, {"format": MANIFEST_FORMAT, "version": 1,
                                                  "preprocessing_hash": self.preprocessing_hash,
                                                  "cases": dict(sorted(self.cases.items()))}, indent=1)

    @classmethod
    def load(cls, folder: Path) -> Manifest | None:
        """The folder's manifest, or None when it is missing or unreadable (the folder then counts as incomplete)."""
        try:
            data = json.loads((Path(folder) / MANIFEST_FILE).read_text())
            if data.get("format") != MANIFEST_FORMAT:
                return None
            return cls({str(k): str(v) for k, v in data["cases"].items()}, str(data["preprocessing_hash"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


def invalidate(folder: Path) -> None:
    """Remove the manifest: the folder is about to change and is incomplete until :meth:`Manifest.save`."""
    (Path(folder) / MANIFEST_FILE).unlink(missing_ok=True)


@dataclass
class Differences:
    """How a complete folder differs from the raw dataset now (case names, sorted)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        parts = [f"{len(cases)} {what}: {_names(cases)}" for what, cases in
                 (("added", self.added), ("removed", self.removed), ("changed", self.changed)) if cases]
        return "; ".join(parts)


def require_up_to_date(data: PreprocessedDataset, raw: RawDataset | None, settings_hash: str, command: str) -> None:
    """Raise :class:`AutoSegNetError` unless ``data`` holds exactly the current raw training cases, preprocessed
    with ``settings_hash`` by a run that finished; ``command`` is what to run to fix it (``autosegnet preprocess
    ...``). Without a raw dataset (``raw`` None or without training images) only the folder itself is checked."""
    folder = data.folder
    if not data.is_complete:
        raise AutoSegNetError(
            f"Preprocessing of {folder} did not finish (it was stopped or failed), so cases are missing. Run "
            f"`{command}` again; it only does the missing cases."
        )
    manifest = Manifest.load(folder)
    if manifest is None:
        raise AutoSegNetError(
            f"There is no record that preprocessing of {folder} finished: it was written by a run that did not "
            f"finish, by an older AutoSegNet or by hand. Run `{command}`; cases already up to date are kept and "
            "only the record is written."
        )
    if manifest.preprocessing_hash != settings_hash:
        raise AutoSegNetError(
            f"The preprocessing settings (plans.json spacing, normalisation, resampling, or dataset.json labels) "
            f"changed since {folder} was preprocessed. Run `{command}` to preprocess again with the current plans."
        )
    _require_listed_cases(data, manifest, command)
    differences = _raw_differences(data, manifest, raw, settings_hash)
    if differences:
        raise AutoSegNetError(
            f"The preprocessed data in {folder} is not up to date with the raw dataset {raw.folder}: "
            f"{differences.describe()}. Run `{command}` (it only redoes what changed; `plan-and-preprocess` instead "
            "also plans again for the new cases) before training."
        )


def _require_listed_cases(data: PreprocessedDataset, manifest: Manifest, command: str) -> None:
    present = set(data.case_names)
    missing, extra = sorted(set(manifest.cases) - present), sorted(present - set(manifest.cases))
    if missing or extra:
        what = "; ".join(f"{label}: {_names(cases)}" for label, cases in
                         (("missing", missing), ("not in the record", extra)) if cases)
        raise AutoSegNetError(
            f"{data.folder} does not hold the cases its preprocessing record lists ({what}); files were removed or "
            f"added by hand. Run `{command}` to bring it back in order."
        )


def _raw_differences(data: PreprocessedDataset, manifest: Manifest, raw: RawDataset | None,
                     settings_hash: str) -> Differences:
    cases = raw.training_cases() if raw is not None else []
    if not cases:
        where = f"in {raw.folder}" if raw is not None else "(no raw dataset.json in the workspace)"
        log.warning("No raw training images %s: cannot check that %s is up to date with them.", where, data.folder)
        return Differences()
    by_name = {case.name: case for case in cases}
    differences = Differences(sorted(set(by_name) - set(manifest.cases)), sorted(set(manifest.cases) - set(by_name)))
    state = FolderState.load(data.folder)
    listing = {entry.name for entry in os.scandir(data.folder)}
    for name in sorted(set(by_name) & set(manifest.cases)):
        current, source = is_up_to_date(by_name[name], state.source_of(name, listing), settings_hash, raw.folder,
                                         listing)
        if not current or source.input_hash != manifest.cases[name]:
            differences.changed.append(name)
    return differences


def _names(cases: list[str]) -> str:
    return ", ".join(cases[:_SHOWN]) + (f", ... ({len(cases) - _SHOWN} more)" if len(cases) > _SHOWN else "")
