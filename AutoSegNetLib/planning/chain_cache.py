"""Skip verify, fingerprint and plan when the raw dataset and the planning settings did not change.

The key is a hash of every raw file's relative path, size and modification time (ns) plus the settings;
it is stored beside ``plans.json`` after a successful run. Any added, removed, touched or rewritten file,
another planner or GPU target, or another engine version gives a new key, so the stages run again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from AutoSegNetLib import __version__
from AutoSegNetLib.layout import FINGERPRINT_FILE, PLANS_FILE
from AutoSegNetLib.utils.atomic import write_json

STATE_FILE = "plan_inputs.json"


def raw_inputs_signature(raw_folder: Path) -> str:
    """SHA-256 over (relative path, size, mtime_ns) of every file below ``raw_folder``, sorted by path."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(raw_folder).rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(raw_folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def chain_key(raw_folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The key that decides whether earlier verify/fingerprint/plan results still hold."""
    return {"engine": __version__, "raw_inputs": raw_inputs_signature(raw_folder), "settings": settings}


def is_up_to_date(preprocessed_folder: Path, key: dict[str, Any]) -> bool:
    """True when the last successful run had this key and its fingerprint and plans are still there."""
    import json

    state = Path(preprocessed_folder) / STATE_FILE
    needed = [state, Path(preprocessed_folder) / FINGERPRINT_FILE, Path(preprocessed_folder) / PLANS_FILE]
    if not all(p.is_file() for p in needed):
        return False
    try:
        return json.loads(state.read_text()) == key
    except (OSError, ValueError):
        return False


def remember(preprocessed_folder: Path, key: dict[str, Any]) -> None:
    """Record ``key`` after verify, fingerprint and plan succeeded."""
    write_json(Path(preprocessed_folder) / STATE_FILE, key)
