"""Small raw datasets built from the shared real data, and hand-made plans, for the preprocessing tests.

Images are symlinked (never copied into the repository); label files that need renumbering (0/255 -> 0/1)
are written into the temporary folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans, ResamplingSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("AUTOSEGNET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


def configuration(name: str, spacing: list[float], patch: list[int], schemes: list[str],
                  use_mask: list[bool] | None = None, data_identifier: str | None = None,
                  resampling: ResamplingSettings | None = None, batch_size: int = 2) -> ConfigurationPlan:
    """A hand-built configuration (network details are irrelevant to preprocessing)."""
    return ConfigurationPlan(
        name=name, data_identifier=data_identifier or f"plans_{name}", spacing=list(spacing), patch_size=list(patch),
        batch_size=batch_size, median_image_size=[float(p) for p in patch], normalization_schemes=list(schemes),
        use_mask_for_norm=list(use_mask) if use_mask is not None else [False] * len(schemes), batch_dice=False,
        network={}, resampling=resampling or ResamplingSettings(),
    )


def plans_for(dataset_name: str, configurations: list[ConfigurationPlan], transpose: list[int] | None = None,
              intensities: dict[str, dict[str, float]] | None = None) -> Plans:
    transpose = transpose or [0, 1, 2]
    return Plans(
        dataset_name=dataset_name, plans_name="plans", planner="hand-built", transpose_forward=list(transpose),
        transpose_backward=[int(i) for i in np.argsort(transpose)], original_median_spacing=[1.0, 1.0, 1.0],
        original_median_shape=[1.0, 1.0, 1.0], image_reader_writer="SimpleITKIO",
        foreground_intensity_properties=intensities or {}, configurations={c.name: c for c in configurations},
    )


def hippocampus_plans(dataset_name: str = "Dataset004_Hippocampus") -> Plans:
    """Equal to nnU-Net's Hippocampus reference: 3d_fullres 1 mm isotropic, patch 40x56x40; 2d 1x1 mm."""
    return plans_for(dataset_name, [
        configuration("2d", [1.0, 1.0], [56, 40], ["ZScoreNormalization"], batch_size=366),
        configuration("3d_fullres", [1.0, 1.0, 1.0], [40, 56, 40], ["ZScoreNormalization"], batch_size=9),
    ])


def write_dataset_json(folder: Path, channels: dict[str, str], labels: dict[str, int], n: int, ending: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps(
        {"channel_names": channels, "labels": labels, "numTraining": n, "file_ending": ending}))


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def hippocampus_raw(raw_root: Path, n_cases: int | None = None, name: str = "Dataset004_Hippocampus") -> Path:
    """``raw_root/<name>/`` with the first ``n_cases`` shared Hippocampus cases (symlinks), nnU-Net layout."""
    source = SHARED_DATA / "Task04_Hippocampus"
    files = sorted((source / "imagesTr").glob("hippocampus_*.nii.gz"))[:n_cases]
    folder = raw_root / name
    for f in files:
        case = f.name[: -len(".nii.gz")]
        link(f, folder / "imagesTr" / f"{case}_0000.nii.gz")
        link(source / "labelsTr" / f.name, folder / "labelsTr" / f.name)
    write_dataset_json(folder, {"0": "MRI"}, {"background": 0, "Anterior": 1, "Posterior": 2}, len(files), ".nii.gz")
    return folder


def brain_raw(raw_root: Path, name: str = "Dataset010_Brain") -> Path:
    """One anisotropic NRRD case (0.78 x 0.78 x 6.5 mm, 25 slices) from the pyradiomics test data."""
    source = SHARED_DATA / "pyradiomics_testcases"
    folder = raw_root / name
    link(source / "brain1_image.nrrd", folder / "imagesTr" / "brain1_0000.nrrd")
    link(source / "brain1_label.nrrd", folder / "labelsTr" / "brain1.nrrd")
    write_dataset_json(folder, {"0": "MRI"}, {"background": 0, "tumour": 1}, 1, ".nrrd")
    return folder


def _binary_label(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.asarray(Image.open(src).convert("L"))
    Image.fromarray((pixels > 127).astype(np.uint8)).save(dst)


def isbi_raw(raw_root: Path, n_cases: int = 2, name: str = "Dataset020_ISBI") -> Path:
    """Greyscale 512x512 PNG EM images with membrane (0) / cell (1) labels."""
    source = SHARED_DATA / "ISBI2012_EM_membrane"
    folder = raw_root / name
    for i in range(n_cases):
        link(source / "image" / f"{i}.png", folder / "imagesTr" / f"em_{i:02d}_0000.png")
        _binary_label(source / "label" / f"{i}.png", folder / "labelsTr" / f"em_{i:02d}.png")
    write_dataset_json(folder, {"0": "EM"}, {"background": 0, "cell": 1}, n_cases, ".png")
    return folder


def drive_raw(raw_root: Path, n_cases: int = 1, name: str = "Dataset021_DRIVE") -> Path:
    """RGB 565x584 fundus photographs (one file = 3 channels) with vessel labels 0/1."""
    source = SHARED_DATA / "DRIVE" / "training"
    folder = raw_root / name
    for i in range(21, 21 + n_cases):
        link(source / "images" / f"{i}_training.tif", folder / "imagesTr" / f"drive_{i}_0000.tif")
        _binary_label(source / "1st_manual" / f"{i}_manual1.gif", folder / "labelsTr" / f"drive_{i}.tif")
    write_dataset_json(folder, {"0": "R", "1": "G", "2": "B"}, {"background": 0, "vessel": 1}, n_cases, ".tif")
    return folder
