"""Tiny synthetic preprocessed datasets for the training tests (a few cases of 20^3 voxels or less)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans
from AutoSegNetLib.preprocessing.incremental import preprocessing_hash
from AutoSegNetLib.preprocessing.manifest import Manifest
from AutoSegNetLib.preprocessing.storage import save_case
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.training import TrainingConfig
from AutoSegNetLib.workspace import Workspace

DATASET = "Dataset001_Tiny"


def synthetic_case(rng: np.random.Generator, shape: tuple[int, ...], channels: int = 1, n_labels: int = 2,
                   with_outside: bool = True, ignore_label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(C, Z, Y, X)`` image and ``(1, Z, Y, X)`` labels: one box per label, bright in the image, noise around;
    with ``with_outside`` a border slab of -1 (outside the crop); with ``ignore_label`` a slab of it."""
    seg = np.zeros(shape, dtype=np.int16)
    for label in range(1, n_labels + 1):
        size = [max(2, s // 3) for s in shape]
        lower = [int(rng.integers(0, s - n + 1)) for s, n in zip(shape, size)]
        seg[tuple(slice(lo, lo + n) for lo, n in zip(lower, size))] = label
    if with_outside:
        seg[..., :1] = -1
    if ignore_label is not None:
        seg[..., -2:] = ignore_label
    image = np.stack([np.where(seg > 0, seg * (1.5 + c), 0).astype(np.float32) for c in range(channels)])
    image += rng.normal(0, 0.3, image.shape).astype(np.float32)
    return image, seg[None]


def class_locations(seg: np.ndarray, labels: list[int]) -> dict[str, list[list[int]]]:
    """``{str(label): [[0, z, y, x], ...]}`` (channel index first, as preprocessing stores them)."""
    out = {}
    for label in labels:
        voxels = np.argwhere(seg == label)
        out[str(label)] = np.concatenate([np.zeros((len(voxels), 1), int), voxels], axis=1).tolist()
    return out


def tiny_plans(patch: list[int], batch_size: int = 2, features: list[int] | None = None, batch_dice: bool = True,
               channels: int = 1, configuration: str | None = None) -> Plans:
    """Plans with one configuration (``3d_fullres`` or ``2d``) of a 2-stage plain U-Net."""
    ndim = len(patch)
    name = configuration or ("3d_fullres" if ndim == 3 else "2d")
    features = features or [4, 8]
    network = {"name": "PlainConvUNet", "ndim": ndim, "features_per_stage": features,
               "kernel_sizes": [[3] * ndim] * len(features),
               "strides": [[1] * ndim] + [[2] * ndim] * (len(features) - 1),
               "n_conv_per_stage": [1] * len(features), "n_conv_per_stage_decoder": [1] * (len(features) - 1)}
    conf = ConfigurationPlan(
        name=name, data_identifier=f"AutoSegNetPlans_{'3d' if ndim == 3 else '2d'}", spacing=[1.0] * ndim,
        patch_size=list(patch), batch_size=batch_size, median_image_size=[20.0] * ndim,
        normalization_schemes=["ZScoreNormalization"] * channels, use_mask_for_norm=[False] * channels,
        batch_dice=batch_dice, network=network,
    )
    return Plans(dataset_name=DATASET, plans_name="AutoSegNetPlans", planner="test", transpose_forward=[0, 1, 2],
                 transpose_backward=[0, 1, 2], original_median_spacing=[1.0, 1.0, 1.0],
                 original_median_shape=[20.0, 20.0, 20.0], image_reader_writer="SimpleITKIO",
                 foreground_intensity_properties={}, configurations={name: conf})


def tiny_workspace(root: Path, patch: list[int] | None = None, n_cases: int = 5, shape: tuple[int, ...] = (18, 20, 20),
                   channels: int = 1, labels: dict | None = None, regions_class_order: list[int] | None = None,
                   batch_size: int = 2, seed: int = 0, features: list[int] | None = None) -> Workspace:
    """A workspace with raw dataset.json, plans.json and preprocessed cases of a tiny dataset."""
    patch = patch or [16, 16, 16]
    labels = labels or {"background": 0, "first": 1, "second": 2}
    workspace = Workspace.at(root).create()
    dataset_json = DatasetJson(channel_names={str(c): f"MR{c}" for c in range(channels)}, labels=labels,
                               num_training=n_cases, file_ending=".nii.gz", regions_class_order=regions_class_order)
    for folder in (workspace.raw / DATASET, workspace.preprocessed / DATASET):
        folder.mkdir(parents=True, exist_ok=True)
        dataset_json.save(folder / "dataset.json")
    plans = tiny_plans(patch, batch_size, features, channels=channels)
    plans.save(workspace.preprocessed / DATASET / "plans.json")
    ignore = labels.get("ignore")
    values = sorted({x for v in labels.values() for x in (v if isinstance(v, list) else [v]) if x not in (0, ignore)})
    rng = np.random.default_rng(seed)
    folder = workspace.preprocessed / DATASET / next(iter(plans.configurations.values())).data_identifier
    for index in range(n_cases):
        image, seg = synthetic_case(rng, shape, channels, len(values), ignore_label=ignore)
        save_case(folder, f"case_{index:03d}", image, seg, {"class_locations": class_locations(seg[0], values)})
    conf = next(iter(plans.configurations.values()))  # no raw images: the record only says the folder is complete
    Manifest({f"case_{i:03d}": "synthetic" for i in range(n_cases)}, preprocessing_hash(plans, conf, dataset_json)
             ).save(folder)
    return workspace


def tiny_config(**changes) -> TrainingConfig:
    """A config that trains in about a second on 2 CPU threads."""
    base = {"epochs": 2, "iterations_per_epoch": 3, "val_iterations": 2, "device": "cpu", "num_workers": 0,
            "save_every": 1, "seed": 1}
    base.update(changes)
    return TrainingConfig(**base)


def raw_workspace(root: Path, n_cases: int = 5, shape: tuple[int, int, int] = (16, 20, 20), seed: int = 0) -> Workspace:
    """A raw NIfTI dataset (``case_XXX_0000.nii.gz`` + labels), tiny plans, preprocessed by the engine."""
    from AutoSegNetLib.imageio import Geometry, io_for
    from AutoSegNetLib.preprocessing.preprocess_dataset import preprocess_dataset

    workspace = Workspace.at(root).create()
    raw = workspace.raw / DATASET
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir(parents=True)
    DatasetJson(channel_names={"0": "MRI"}, labels={"background": 0, "first": 1, "second": 2},
                num_training=n_cases, file_ending=".nii.gz").save(raw / "dataset.json")
    io = io_for(".nii.gz")
    rng = np.random.default_rng(seed)
    geometry = Geometry(spacing=(1.0, 1.0, 1.0))
    for index in range(n_cases):
        image, seg = synthetic_case(rng, shape, with_outside=False)
        io.write_image(image[0] + 3.0, raw / "imagesTr" / f"case_{index:03d}_0000.nii.gz", geometry)
        io.write_seg(seg[0].astype(np.uint8), raw / "labelsTr" / f"case_{index:03d}.nii.gz", geometry)
    pre = workspace.preprocessed / DATASET
    pre.mkdir(parents=True)
    DatasetJson.load(raw / "dataset.json").save(pre / "dataset.json")
    tiny_plans([16, 16, 16]).save(pre / "plans.json")
    preprocess_dataset(workspace, DATASET, ["3d_fullres"], num_workers=0)
    return workspace


class InterruptAt(ProgressReporter):
    """Sends this process SIGINT when the n-th training iteration event is emitted."""

    def __init__(self, n: int) -> None:
        super().__init__("none")
        self.n, self.seen = n, 0

    def emit(self, event, **fields):
        if event == "iteration":
            self.seen += 1
            if self.seen == self.n:
                os.kill(os.getpid(), signal.SIGINT)
        return super().emit(event, **fields)

    def with_status_file(self, status_file):
        self.status_file = status_file
        return self
