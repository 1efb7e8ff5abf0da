"""What needs preprocessing: content hashes of the inputs and of the preprocessing settings.

A case is up to date in a configuration folder when its arrays exist and were made from the same input
files (same content hash) with the same preprocessing settings (same :func:`preprocessing_hash`). Input
files whose size and modification time are unchanged are trusted without re-reading them; otherwise their
bytes are hashed, so touching a file or copying it back does not cause work.

The per-case truth is in each case's properties file (``source``: files, input hash, preprocessing hash),
written last. ``.preprocessing_state.json`` in the folder caches all of them so a re-run reads one file;
entries of cases about to be rewritten are removed from it before any work starts, so after a crash the
properties files decide.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.dataset.raw import Case
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans
from AutoSegNetLib.utils.atomic import read_json, write_json

STATE_FILE = ".preprocessing_state.json"
STATE_FORMAT = "autosegnet-preprocessing-state"
# bump when the preprocessing code changes its output for the same inputs and settings
PREPROCESSING_CODE_VERSION = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileRecord:
    """One input file: path (relative to the raw dataset when inside it), size, mtime (ns), content hash."""

    path: str
    size: int
    mtime_ns: int
    digest: str


@dataclass
class CaseSource:
    """Where a preprocessed case came from: its input files, their combined hash, and the settings hash."""

    files: list[FileRecord]
    input_hash: str
    preprocessing_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"files": [list(asdict(f).values()) for f in self.files], "input_hash": self.input_hash,
                "preprocessing_hash": self.preprocessing_hash}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseSource:
        return cls([FileRecord(*f) for f in data["files"]], data["input_hash"], data["preprocessing_hash"])


@dataclass
class FolderState:
    """The cached sources of the cases in one configuration folder."""

    folder: Path
    cases: dict[str, CaseSource] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> FolderState:
        path = Path(folder) / STATE_FILE
        try:
            data = json.loads(path.read_text())
            if data.get("format") != STATE_FORMAT:
                return cls(Path(folder))
            return cls(Path(folder), {name: CaseSource.from_dict(v) for name, v in data["cases"].items()})
        except (OSError, ValueError, KeyError, TypeError):
            return cls(Path(folder))  # a missing or damaged cache only costs time

    def save(self) -> None:
        write_json(self.folder / STATE_FILE, {"format": STATE_FORMAT, "version": 1,
                                              "cases": {n: s.to_dict() for n, s in sorted(self.cases.items())}},
                   indent=None)

    def source_of(self, name: str, listing: set[str]) -> CaseSource | None:
        """The recorded source of ``name``: from the cache, else from its properties file."""
        if name in self.cases:
            return self.cases[name]
        if f"{name}.json" not in listing:
            return None
        try:
            return CaseSource.from_dict(read_json(self.folder / f"{name}.json")["source"])
        except Exception:  # an old or foreign properties file: preprocess again
            return None


def preprocessing_hash(plans: Plans, configuration: ConfigurationPlan, dataset_json: DatasetJson) -> str:
    """Hash of everything preprocessing reads from the plans and dataset.json for ``configuration``.

    Changing the batch size, patch size or network leaves it unchanged (the preprocessed data would be the
    same); changing spacing, normalisation, resampling, axis order, CT statistics or labels changes it.
    """
    ct_channels = [str(c) for c, s in enumerate(configuration.normalization_schemes) if s == "CTNormalization"]
    relevant = {
        "code": PREPROCESSING_CODE_VERSION,
        "transpose_forward": list(plans.transpose_forward),
        "spacing": [float(s) for s in configuration.spacing],
        "normalization_schemes": list(configuration.normalization_schemes),
        "use_mask_for_norm": [bool(u) for u in configuration.use_mask_for_norm],
        "resampling": asdict(configuration.resampling),
        "ct_intensities": {c: plans.foreground_intensity_properties.get(c) for c in ct_channels},
        "labels": dataset_json.labels,
        "channels": dataset_json.num_channels,
    }
    return hashlib.blake2b(json.dumps(relevant, sort_keys=True).encode(), digest_size=16).hexdigest()


def hash_file(path: Path) -> str:
    """blake2b (128 bit) of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def case_files(case: Case) -> list[Path]:
    """Input files of a case: channel images in order, then the label (if any)."""
    return [*case.images, *([case.label] if case.label is not None else [])]


def record_files(case: Case, raw_folder: Path) -> list[FileRecord]:
    """Stat (before reading!) and hash every input file of ``case``."""
    records = []
    for path in case_files(case):
        stat = os.stat(path)
        records.append(FileRecord(_relative(path, raw_folder), stat.st_size, stat.st_mtime_ns, hash_file(path)))
    return records


def combined_hash(records: list[FileRecord]) -> str:
    """One hash for a case's input files (their order and contents)."""
    digest = hashlib.blake2b(digest_size=16)
    for index, record in enumerate(records):
        digest.update(f"{index}:{record.digest};".encode())
    return digest.hexdigest()


def is_up_to_date(case: Case, recorded: CaseSource | None, settings_hash: str, raw_folder: Path,
                  listing: set[str]) -> tuple[bool, CaseSource | None]:
    """Whether ``case`` needs no work; also returns the recorded source refreshed with new stats.

    Files with unchanged size and mtime are trusted; changed ones are hashed and compared.
    """
    if recorded is None or recorded.preprocessing_hash != settings_hash:
        return False, None
    if f"{case.name}.npy" not in listing or f"{case.name}.json" not in listing:
        return False, None
    if case.label is not None and f"{case.name}_seg.npy" not in listing:
        return False, None
    paths = case_files(case)
    if [_relative(p, raw_folder) for p in paths] != [f.path for f in recorded.files]:
        return False, None
    refreshed, changed = [], False
    for path, record in zip(paths, recorded.files):
        try:
            stat = os.stat(path)
        except OSError:
            return False, None
        if stat.st_size == record.size and stat.st_mtime_ns == record.mtime_ns:
            refreshed.append(record)
            continue
        if stat.st_size != record.size or hash_file(path) != record.digest:
            return False, None
        refreshed.append(FileRecord(record.path, stat.st_size, stat.st_mtime_ns, record.digest))
        changed = True
    if not changed:
        return True, recorded
    return True, CaseSource(refreshed, recorded.input_hash, recorded.preprocessing_hash)


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()
