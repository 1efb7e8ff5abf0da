"""The DDP test's per-process function, in a module that imports little (spawned processes import it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from AutoSegNetLib.network import build_network
from AutoSegNetLib.training.batches import Batch
from AutoSegNetLib.training.distributed import (
    DistributedSettings,
    batch_rows,
    init_process_group,
    shutdown_process_group,
    wrap_network,
)
from AutoSegNetLib.training.fold_setup import LabelSetup
from AutoSegNetLib.training.loss import build_loss
from AutoSegNetLib.training.runtime import Runtime
from AutoSegNetLib.training.schedule import PolyLR
from AutoSegNetLib.training.step import TrainingComponents, train_step

SPEC = {"name": "PlainConvUNet", "ndim": 3, "features_per_stage": [4, 8, 8], "kernel_sizes": [[3, 3, 3]] * 3,
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]], "n_conv_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1]}
LABELS = LabelSetup(("a", "b"), None, None, 3)
GLOBAL_BATCH, STEPS = 4, 3


def global_batches() -> list[Batch]:
    """Fixed batches (no sampling, no augmentation): data (4, 1, 16, 16, 16), targets at full and half size."""
    rng = np.random.default_rng(0)
    batches = []
    for index in range(STEPS):
        seg = rng.integers(0, 3, (GLOBAL_BATCH, 1, 16, 16, 16)).astype(np.int16)
        data = (seg + rng.normal(0, 0.5, seg.shape)).astype(np.float32)
        batches.append(Batch(index, data, [seg, np.ascontiguousarray(seg[..., 1::2, 1::2, 1::2])], []))
    return batches


def rows_of(batch: Batch, rows: tuple[int, int]) -> Batch:
    low, high = rows
    return Batch(batch.index, batch.data[low:high], [t[low:high] for t in batch.targets], [])


def components(distributed: DistributedSettings | None) -> TrainingComponents:
    """Seeded network, SGD and batch-Dice + CE loss with deep supervision (all-gathered under DDP)."""
    torch.manual_seed(0)
    network = build_network(SPEC, 1, 3, deep_supervision=True)
    runtime = Runtime(torch.device("cpu"))
    wrapped = wrap_network(network, runtime, distributed)
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    loss = build_loss(2, batch_dice=True, regions=False, ignore_label=None, distributed=distributed is not None)
    return TrainingComponents(wrapped, network, optimizer, loss, PolyLR(1e-2), None, runtime, LABELS, 12.0)


def ddp_worker(rank: int, world_size: int, init_method: str, out: str) -> None:
    """Train ``STEPS`` steps on this rank's rows of every global batch; save the weights to ``out/rank<r>.pt``."""
    torch.set_num_threads(1)
    settings = DistributedSettings(rank, world_size, rank, init_method)
    init_process_group(settings, torch.device("cpu"))
    try:
        c = components(settings)
        for batch in global_batches():
            train_step(c, rows_of(batch, batch_rows(GLOBAL_BATCH, world_size, rank)))
        torch.save(c.model.state_dict(), Path(out) / f"rank{rank}.pt")
    finally:
        shutdown_process_group()
