"""Build the pieces the training loop is given: network, optimiser, loss, schedule, data streams.

Each builder is a small function of the plan, the labels and the :class:`TrainingConfig`; the loop never
constructs anything itself, so a test (or a new recipe) can hand it other components.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import PLANS_FILE
from AutoSegNetLib.network import NetworkSpec, build_network
from AutoSegNetLib.planning.plans import ConfigurationPlan
from AutoSegNetLib.training.augmentation import AugmentationGeometry, training_transforms
from AutoSegNetLib.training.batches import (
    TRAIN_STREAM,
    VAL_STREAM,
    BatchSource,
    TargetSpec,
    deep_supervision_scales,
)
from AutoSegNetLib.training.cascade_augmentation import PreviousStageChannels
from AutoSegNetLib.training.checkpoint import bare_network
from AutoSegNetLib.training.config import TrainingConfig
from AutoSegNetLib.training.distributed import DistributedSettings, batch_rows, wrap_network
from AutoSegNetLib.training.fast_ops import instance_norm_as_group_norm
from AutoSegNetLib.training.fold_setup import FoldSetup, LabelSetup
from AutoSegNetLib.training.loss import build_loss
from AutoSegNetLib.training.pretrained import load_pretrained_weights
from AutoSegNetLib.training.runtime import Runtime
from AutoSegNetLib.training.sampling import PatchSampler
from AutoSegNetLib.training.schedule import PolyLR
from AutoSegNetLib.training.step import TrainingComponents

log = logging.getLogger(__name__)


def patch_and_batch_size(plan: ConfigurationPlan, config: TrainingConfig) -> tuple[list[int], int]:
    """The patch (voxels per axis) and global batch size: the plan's unless the config overrides them."""
    patch = list(config.patch_size) if config.patch_size is not None else list(plan.patch_size)
    spec = NetworkSpec.from_dict(plan.network, source=f"{PLANS_FILE}: configurations.{plan.name}.network")
    if len(patch) != spec.ndim:
        raise AutoSegNetError(f"patch_size {patch} must have {spec.ndim} axes for configuration {plan.name!r}.")
    total_stride = np.prod(np.asarray(spec.strides), axis=0)
    if any(p % s for p, s in zip(patch, total_stride)):
        raise AutoSegNetError(
            f"patch_size {patch} must be divisible by the network's total stride {total_stride.tolist()} per axis."
        )
    return patch, int(config.batch_size or plan.batch_size)


def make_network(plan: ConfigurationPlan, input_channels: int, labels: LabelSetup, config: TrainingConfig,
                 runtime: Runtime) -> nn.Module:
    """The planned network, seeded (``config.seed``) so every run and every DDP rank starts alike."""
    torch.manual_seed(config.seed)
    network = build_network(plan.network, input_channels, labels.num_heads, config.deep_supervision)
    fast_norm = config.fast_norm if config.fast_norm is not None else runtime.device.type == "cpu"
    if fast_norm:
        instance_norm_as_group_norm(network)
    ndim = 2 + len(plan.patch_size)
    return network.to(runtime.device, memory_format=runtime.memory_format(ndim))


def make_components(setup: FoldSetup, config: TrainingConfig, runtime: Runtime,
                    distributed: DistributedSettings | None = None, pretrained: Path | None = None
                    ) -> TrainingComponents:
    """Network (from ``pretrained`` weights when given), SGD, Dice+CE/BCE loss with deep supervision, poly
    schedule and GradScaler for a fold."""
    network = make_network(setup.plan, setup.num_input_channels, setup.labels, config, runtime)
    if pretrained is not None:
        load_pretrained_weights(network, pretrained, setup.labels)
    optimizer = torch.optim.SGD(network.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov, weight_decay=config.weight_decay)
    ddp = distributed is not None and distributed.world_size > 1
    n_outputs = len(deep_supervision_scales(NetworkSpec.from_dict(setup.plan.network).strides,
                                            config.deep_supervision))
    loss = build_loss(n_outputs, setup.plan.batch_dice, setup.labels.regions is not None, setup.labels.ignore_label,
                      distributed=ddp)
    schedule = PolyLR(config.lr, exponent=config.poly_exponent, warmup_epochs=config.warmup_epochs)
    scaler = torch.amp.GradScaler("cuda") if runtime.grad_scaler else None
    wrapped = wrap_network(network, runtime, distributed, config.compile)
    return TrainingComponents(wrapped, bare_network(network), optimizer, loss, schedule, scaler, runtime, setup.labels,
                              config.grad_clip)


def make_batch_sources(setup: FoldSetup, config: TrainingConfig, rank: int = 0, world_size: int = 1
                       ) -> tuple[dict[str, BatchSource], AugmentationGeometry]:
    """The ``train`` (augmented, enlarged patches) and ``val`` (plain patches) batch streams of this rank."""
    patch, batch_size = patch_and_batch_size(setup.plan, config)
    geometry = AugmentationGeometry.for_patch(patch)
    spec = NetworkSpec.from_dict(setup.plan.network)
    targets = TargetSpec(
        scales=deep_supervision_scales(spec.strides, config.deep_supervision),
        regions=setup.labels.regions,
        ignore_label=setup.labels.ignore_label,
        mask_channels=tuple(i for i, m in enumerate(setup.plan.use_mask_for_norm) if m),
    )
    rows = batch_rows(batch_size, world_size, rank)
    sampled = geometry.sampled_patch_size if config.augmentation else tuple(patch)
    transforms = training_transforms(geometry) if config.augmentation else None
    cases = setup.case_source()
    sources = {"train": BatchSource(
        PatchSampler(cases, setup.train_cases, sampled, patch, batch_size, config.oversample_foreground,
                     setup.labels.ignore_label),
        transforms, targets, config.seed, TRAIN_STREAM, rows, previous_stage_channels(setup, config.augmentation),
    )}
    if setup.val_cases and config.val_iterations > 0:
        sources["val"] = BatchSource(
            PatchSampler(cases, setup.val_cases, patch, patch, batch_size, config.oversample_foreground,
                         setup.labels.ignore_label),
            None, targets, config.seed, VAL_STREAM, rows, previous_stage_channels(setup, augment=False),
        )
    return sources, geometry


def previous_stage_channels(setup: FoldSetup, augment: bool) -> PreviousStageChannels | None:
    """For a cascade stage, how a sample's lowres segmentation becomes input channels (augmented in training)."""
    if setup.previous_stage is None:
        return None
    return PreviousStageChannels(setup.previous_stage.label_values, augment=augment)


def default_num_workers(config: TrainingConfig, runtime: Runtime, cpu_count: int | None) -> int:
    """``config.num_workers`` when set; else 0 on CPU/MPS and ``min(8, cores - 2)`` (at least 1) with CUDA."""
    if config.num_workers is not None:
        return config.num_workers
    if runtime.device.type != "cuda":
        return 0
    return max(1, min(8, (cpu_count or 2) - 2))


def format_parameters(network: nn.Module) -> str:
    count = sum(p.numel() for p in network.parameters())
    return f"{count / 1e6:.2f} M parameters" if count >= 1e5 else f"{count} parameters"

