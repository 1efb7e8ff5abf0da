"""Helpers for the fingerprint and planner tests: tiny raw datasets, constructed fingerprints, Hippocampus."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from AutoSegNetLib.dataset import DatasetJson
from AutoSegNetLib.fingerprint import CaseFingerprint, Fingerprint, IntensityStatistics
from AutoSegNetLib.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("AUTOSEGNET_SHARED_DATA", REPO_ROOT / "../shared/data")).resolve()
HIPPOCAMPUS_LABELS = {"background": 0, "Anterior": 1, "Posterior": 2}


def write_dataset_json(folder: Path, channel_names: dict[str, str], labels: dict, num_training: int,
                       file_ending: str = ".nii.gz") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": channel_names, "labels": labels, "numTraining": num_training, "file_ending": file_ending,
    }))


def write_nifti(array: np.ndarray, path: Path, spacing_zyx: tuple[float, float, float]) -> None:
    """Write a ``(Z, Y, X)`` array with spacing given in array order ``(z, y, x)`` mm."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    sitk.WriteImage(image, str(path))


def write_case(raw: Path, name: str, channels: list[np.ndarray], seg: np.ndarray,
               spacing_zyx: tuple[float, float, float]) -> None:
    for index, channel in enumerate(channels):
        write_nifti(channel.astype(np.float32), raw / "imagesTr" / f"{name}_{index:04d}.nii.gz", spacing_zyx)
    write_nifti(seg.astype(np.uint8), raw / "labelsTr" / f"{name}.nii.gz", spacing_zyx)


def constructed_fingerprint(spacings: list, shapes: list, relative_size: float = 1.0, num_channels: int = 1,
                            name: str = "Dataset001_Test") -> Fingerprint:
    """A fingerprint with the given per-case spacings ``(z, y, x)`` and shapes after crop (one entry per case)."""
    stats = IntensityStatistics(mean=1.0, median=1.0, std=1.0, min=0.0, max=2.0, percentile_00_5=0.0,
                                percentile_99_5=2.0)
    cases = [
        CaseFingerprint(f"case_{i:03d}", [float(s) for s in spacing], [int(s) for s in shape],
                        [int(s) for s in shape], relative_size, 100)
        for i, (spacing, shape) in enumerate(zip(spacings, shapes))
    ]
    return Fingerprint(name, num_channels, cases, {str(c): stats for c in range(num_channels)}, relative_size,
                       1000, 1234)


def uniform_fingerprint(num_cases: int, spacing: tuple, shape: tuple, **kwargs) -> Fingerprint:
    return constructed_fingerprint([spacing] * num_cases, [shape] * num_cases, **kwargs)


def dataset_json(channel_names: dict[str, str] | None = None, labels: dict | None = None,
                 num_training: int = 208, file_ending: str = ".nii.gz") -> DatasetJson:
    return DatasetJson.from_dict({
        "channel_names": channel_names or {"0": "MRI"}, "labels": labels or HIPPOCAMPUS_LABELS,
        "numTraining": num_training, "file_ending": file_ending,
    })


def hippocampus_workspace(tmp: Path) -> Workspace:
    """``Dataset004_Hippocampus`` in ``tmp`` as symlinks to the 208 shared MSD cases (``x`` -> ``x_0000``)."""
    source = SHARED_DATA / "Task04_Hippocampus"
    if not source.is_dir():
        pytest.skip(f"shared test data not found at {source} (expected ../shared/data beside the repository)")
    workspace = Workspace.at(tmp / "ws")
    raw = workspace.raw / "Dataset004_Hippocampus"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    images = sorted((source / "imagesTr").glob("*.nii.gz"))
    for image in images:
        case = image.name[: -len(".nii.gz")]
        (raw / "imagesTr" / f"{case}_0000.nii.gz").symlink_to(image)
        (raw / "labelsTr" / image.name).symlink_to(source / "labelsTr" / image.name)
    write_dataset_json(raw, {"0": "MRI"}, HIPPOCAMPUS_LABELS, len(images))
    return workspace
