"""Tiny model folders built in the test (plans.json, dataset.json, random-weight checkpoints) for the
inference, evaluation and model-packaging tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.imageio import Geometry
from AutoSegNetLib.layout import CHECKPOINT_FORMAT, model_folder_name
from AutoSegNetLib.network import NetworkSpec, build_network
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans

PLANS_NAME = "nnUNetPlans"
DATASET = "Dataset001_Tiny"


def tiny_spec(ndim: int = 3, name: str = "PlainConvUNet", stages: int = 2) -> NetworkSpec:
    """A 2-stage (or deeper) U-Net with 4, 8, ... features: fast enough for many forward passes."""
    return NetworkSpec(
        name=name, ndim=ndim, features_per_stage=[4 * 2**s for s in range(stages)],
        kernel_sizes=[[3] * ndim] * stages, strides=[[1] * ndim] + [[2] * ndim] * (stages - 1),
        n_conv_per_stage=[1] * stages, n_conv_per_stage_decoder=[1] * (stages - 1),
    )


def tiny_configuration(
    name: str = "3d_fullres",
    ndim: int = 3,
    patch: Sequence[int] = (8, 8, 8),
    spacing: Sequence[float] | None = None,
    channels: int = 1,
    network: str = "PlainConvUNet",
    previous_stage: str | None = None,
    next_stage: str | None = None,
) -> ConfigurationPlan:
    return ConfigurationPlan(
        name=name, data_identifier=f"{PLANS_NAME}_{name}", spacing=list(spacing or [1.0] * ndim),
        patch_size=list(patch), batch_size=2, median_image_size=[float(p) for p in patch],
        normalization_schemes=["ZScoreNormalization"] * channels, use_mask_for_norm=[False] * channels,
        batch_dice=False, network=tiny_spec(ndim, network).to_dict(), previous_stage=previous_stage,
        next_stage=next_stage,
    )


def tiny_plans(configurations: Sequence[ConfigurationPlan], channels: int = 1) -> Plans:
    return Plans(
        dataset_name=DATASET, plans_name=PLANS_NAME, planner="default", transpose_forward=[0, 1, 2],
        transpose_backward=[0, 1, 2], original_median_spacing=[1.0, 1.0, 1.0], original_median_shape=[8.0, 8.0, 8.0],
        image_reader_writer="SimpleITKIO",
        foreground_intensity_properties={
            str(c): {"mean": 0.0, "std": 1.0, "median": 0.0, "min": -3.0, "max": 3.0, "percentile_00_5": -2.5,
                     "percentile_99_5": 2.5} for c in range(channels)
        },
        configurations={c.name: c for c in configurations},
    )


def tiny_dataset_json(channels: int = 1, regions: bool = False, ending: str = ".nii.gz") -> DatasetJson:
    if regions:
        return DatasetJson(
            channel_names={str(c): f"MR{c}" for c in range(channels)},
            labels={"background": 0, "whole": [1, 2], "core": [2]}, num_training=4, file_ending=ending,
            regions_class_order=[1, 2],
        )
    return DatasetJson(channel_names={str(c): f"MR{c}" for c in range(channels)},
                       labels={"background": 0, "left": 1, "right": 2}, num_training=4, file_ending=ending)


def save_checkpoint(
    path: Path, network: torch.nn.Module, configuration: str, mirror_axes: Sequence[int] | None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "format": CHECKPOINT_FORMAT, "version": 1, "network_weights": network.state_dict(),
        "optimizer_state": {}, "grad_scaler_state": None, "epoch": 1, "best_ema": None, "log": {},
        "rng_state": {}, "training_config": {}, "configuration": configuration,
        "inference_allowed_mirroring_axes": None if mirror_axes is None else list(mirror_axes),
    }, path)


def random_network(configuration: ConfigurationPlan, dataset_json: DatasetJson, extra_inputs: int = 0,
                   seed: int = 0) -> torch.nn.Module:
    """A randomly initialised network for the configuration; biases of the last layer made distinct so
    outputs are not near-ties."""
    torch.manual_seed(seed)
    network = build_network(configuration.network, dataset_json.num_channels + extra_inputs,
                            dataset_json.num_segmentation_heads, deep_supervision=True)
    return network.eval()


def write_model_folder(
    results: Path,
    configuration: ConfigurationPlan,
    dataset_json: DatasetJson,
    folds: Sequence[int | str] = (0,),
    plans: Plans | None = None,
    mirror_axes: Sequence[int] | None = "all",  # type: ignore[assignment]
    extra_inputs: int = 0,
    checkpoints: Sequence[str] = ("final",),
) -> Path:
    """``results/Dataset001_Tiny/AutoSegNet__nnUNetPlans__<configuration>/`` with one random network per fold."""
    plans = plans or tiny_plans([configuration], dataset_json.num_channels)
    folder = results / DATASET / model_folder_name(PLANS_NAME, configuration.name)
    folder.mkdir(parents=True, exist_ok=True)
    plans.save(folder / "plans.json")
    dataset_json.save(folder / "dataset.json")
    axes = list(range(configuration.ndim)) if mirror_axes == "all" else mirror_axes
    for index, fold in enumerate(folds):
        network = random_network(configuration, dataset_json, extra_inputs, seed=index)
        for name in checkpoints:
            save_checkpoint(folder / f"fold_{fold}" / f"checkpoint_{name}.pth", network, configuration.name, axes)
    return folder


def blob_image(shape: Sequence[int] = (10, 12, 9), channels: int = 1, seed: int = 0) -> np.ndarray:
    """A ``(C, Z, Y, X)`` float32 image: two bright blobs on noise (non-zero everywhere, so nothing is cropped)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 0.1, (channels, *shape)).astype(np.float32) + 1.0
    z, y, x = np.indices(shape)
    image[:, (z - shape[0] // 3) ** 2 + (y - shape[1] // 3) ** 2 + (x - shape[2] // 2) ** 2 < 6] += 3
    image[:, (z - 2 * shape[0] // 3) ** 2 + (y - 2 * shape[1] // 3) ** 2 + (x - shape[2] // 2) ** 2 < 5] += 6
    return image


def geometry(spacing: Sequence[float] = (1.0, 1.0, 1.0), image_dim: int = 3) -> Geometry:
    return Geometry(tuple(spacing), (1.0, 2.0, 3.0), image_dim=image_dim)
