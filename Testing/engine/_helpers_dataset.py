"""Helpers for the image I/O, dataset, converter and verify tests: shared-data paths, small source folders.

Real data is copied only into pytest's temporary folders, never into the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from AutoSegNetLib.dataset.convert_msd import convert_msd
from AutoSegNetLib.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("AUTOSEGNET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()
HIPPOCAMPUS = "Task04_Hippocampus"


def shared(*parts: str) -> Path:
    """A path in the shared real-data folder, or skip the test saying where it was expected."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (expected ../shared/data beside the repository)")
    return path


def hippocampus_cases(count: int) -> list[str]:
    """The first ``count`` Hippocampus case names in the MSD dataset.json's order."""
    listed = json.loads((shared(HIPPOCAMPUS) / "dataset.json").read_text())["training"]
    return [Path(entry["image"]).name[: -len(".nii.gz")] for entry in listed[:count]]


def msd_hippocampus_subset(tmp: Path, count: int) -> Path:
    """A copy of the MSD Hippocampus task with its first ``count`` cases (MSD layout, named TaskXX_Name)."""
    source = shared(HIPPOCAMPUS)
    target = tmp / "msd" / HIPPOCAMPUS
    (target / "imagesTr").mkdir(parents=True)
    (target / "labelsTr").mkdir()
    meta = json.loads((source / "dataset.json").read_text())
    meta["training"] = meta["training"][:count]
    meta["numTraining"] = count
    for case in hippocampus_cases(count):
        for sub in ("imagesTr", "labelsTr"):
            shutil.copyfile(source / sub / f"{case}.nii.gz", target / sub / f"{case}.nii.gz")
    (target / "dataset.json").write_text(json.dumps(meta, indent=1))
    return target


def converted_hippocampus(tmp: Path, count: int) -> Path:
    """``Dataset004_Hippocampus`` with ``count`` real cases, converted into ``tmp/ws``; returns its folder."""
    source = msd_hippocampus_subset(tmp, count)
    return convert_msd(Workspace.at(tmp / "ws"), source).folder


def tree_digest(folder: Path) -> dict[str, str]:
    """``{relative path: sha1 of content + mode}`` of every file and folder below ``folder``."""
    digest = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_dir():
            digest[rel] = f"dir {path.stat().st_mode:o}"
        else:
            digest[rel] = hashlib.sha1(path.read_bytes()).hexdigest() + f" {path.stat().st_mode:o}"
    return digest
