"""The model folders of a client's workspace, with the small files a client mirrors to know them.

A model folder is one with ``plans.json`` and ``dataset.json`` under ``results/<dataset>/`` (trained or
installed) or ``versions/<dataset>/<configuration>/v<NNN>`` (saved versions). A client copies the listed
metadata files (JSON and text, not checkpoints) to show the model -- its labels, channels, folds and Dice -- and
refers to the folder by its relative path when it asks the server to predict with it.
"""

from __future__ import annotations

from pathlib import Path

METADATA_SUFFIXES = (".json", ".txt")
MAX_METADATA_BYTES = 4 * 2**20


def list_models(root: Path) -> list[dict]:
    """``[{"path": relative folder, "folds": [...], "checkpoints": [...], "metadata": [{"path", "bytes"}]}]``."""
    root = Path(root)
    candidates = sorted(root.glob("results/*/*")) + sorted(root.glob("versions/*/*/v[0-9]*"))
    return [entry for entry in (_describe(folder, root) for folder in candidates) if entry is not None]


def _describe(folder: Path, root: Path) -> dict | None:
    if not (folder / "plans.json").is_file() or not (folder / "dataset.json").is_file():
        return None
    checkpoints = sorted(p.relative_to(folder).as_posix() for p in folder.glob("fold_*/checkpoint_*.pth"))
    metadata = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in METADATA_SUFFIXES
                and not p.name.startswith(".") and p.stat().st_size <= MAX_METADATA_BYTES]
    return {
        "path": folder.relative_to(root).as_posix(),
        "folds": sorted({c.split("/")[0][len("fold_"):] for c in checkpoints}),
        "checkpoints": checkpoints,
        "metadata": [{"path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size} for p in metadata],
    }
