"""A small synthetic 3D segmentation dataset, generated on the fly (no download).

Each case is a noisy MR-like volume with two touching ellipsoids ("inner" label 1 inside "outer" label 2),
random size, position, intensity scale and a slightly anisotropic spacing, so every stage of the pipeline
(fingerprint, planning, normalisation, resampling, training, prediction) has something real to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from AutoSegNetLib.dataset import DatasetJson, dataset_folder_name
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, io_for
from AutoSegNetLib.workspace import Workspace

DEMO_ID = 900
DEMO_NAME = "SyntheticEllipsoids"
LABELS = {"background": 0, "inner": 1, "outer": 2}


def make_case(rng: np.random.Generator, shape: tuple[int, int, int] = (24, 40, 40)) -> tuple[np.ndarray, np.ndarray]:
    """One case: image ``(Z, Y, X)`` float32 and label map ``(Z, Y, X)`` uint8."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
    centre = np.array([rng.uniform(0.4, 0.6) * n for n in shape], dtype=np.float32)
    radii = np.array([rng.uniform(0.18, 0.3) * n for n in shape], dtype=np.float32)
    distance = np.sqrt((((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0))
    seg = np.zeros(shape, np.uint8)
    seg[distance < 1.0] = 2
    seg[distance < 0.55] = 1
    scale = rng.uniform(50, 400)
    image = np.where(seg == 1, 1.0, np.where(seg == 2, 0.6, 0.15)).astype(np.float32)
    image = image + rng.normal(0, 0.08, shape).astype(np.float32)
    return (image * scale).astype(np.float32), seg


def write_synthetic_dataset(workspace: Workspace, num_cases: int = 12, seed: int = 0, overwrite: bool = False) -> Path:
    """Write ``Dataset900_SyntheticEllipsoids`` into ``workspace.raw``; returns its folder."""
    folder = workspace.raw / dataset_folder_name(DEMO_ID, DEMO_NAME)
    if folder.exists() and not overwrite:
        if (folder / "dataset.json").is_file():
            return folder
        raise AutoSegNetError(f"{folder} exists but is not a dataset; remove it or choose another workspace.")
    rng = np.random.default_rng(seed)
    io = io_for(".nii.gz")
    geometry = Geometry(spacing=(1.5, 1.0, 1.0), origin=(-20.0, -20.0, -18.0))
    for i in range(num_cases):
        image, seg = make_case(rng)
        name = f"case_{i:03d}"
        io.write_image(image, folder / "imagesTr" / f"{name}_0000.nii.gz", geometry)
        io.write_seg(seg, folder / "labelsTr" / f"{name}.nii.gz", geometry)
    DatasetJson(
        channel_names={"0": "MRI"}, labels=dict(LABELS), num_training=num_cases, file_ending=".nii.gz",
        metadata={"name": DEMO_NAME, "description": "synthetic ellipsoids made by `autosegnet demo`"},
    ).save(folder / "dataset.json")
    return folder
