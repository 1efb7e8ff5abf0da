"""One training step and one validation step, and the components they use (built elsewhere, handed in)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from AutoSegNetLib.training.batches import Batch
from AutoSegNetLib.training.fold_setup import LabelSetup
from AutoSegNetLib.training.loss import confusion_counts
from AutoSegNetLib.training.runtime import Runtime
from AutoSegNetLib.training.schedule import PolyLR


@dataclass
class TrainingComponents:
    """What one training step needs. ``network`` may be wrapped (DDP, compiled); ``model`` is the bare
    network (for checkpoints and deep-supervision switching)."""

    network: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss: nn.Module
    schedule: PolyLR
    scaler: torch.amp.GradScaler | None
    runtime: Runtime
    labels: LabelSetup
    grad_clip: float


def to_device(batch: Batch, components: TrainingComponents) -> tuple[torch.Tensor, list[torch.Tensor]]:
    runtime = components.runtime
    non_blocking = runtime.device.type == "cuda"
    data = torch.from_numpy(batch.data).to(runtime.device, non_blocking=non_blocking)
    data = data.contiguous(memory_format=runtime.memory_format(data.ndim))
    targets = [torch.from_numpy(t).to(runtime.device, non_blocking=non_blocking) for t in batch.targets]
    return data, targets


def _as_list(outputs: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return outputs if isinstance(outputs, (list, tuple)) else [outputs]


def train_step(c: TrainingComponents, batch: Batch) -> torch.Tensor:
    """One optimiser step on ``batch``; returns the (detached) loss."""
    data, targets = to_device(batch, c)
    c.optimizer.zero_grad(set_to_none=True)
    with c.runtime.autocast():
        loss = c.loss(_as_list(c.network(data)), targets)
    if c.scaler is not None:
        c.scaler.scale(loss).backward()
        c.scaler.unscale_(c.optimizer)
        torch.nn.utils.clip_grad_norm_(c.network.parameters(), c.grad_clip)
        c.scaler.step(c.optimizer)
        c.scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(c.network.parameters(), c.grad_clip)
        c.optimizer.step()
    return loss.detach()


@torch.no_grad()
def validation_step(c: TrainingComponents, batch: Batch) -> tuple[float, torch.Tensor]:
    """Loss and ``(3, K_fg)`` float64 CPU confusion counts (tp, fp, fn) of the highest-resolution output."""
    data, targets = to_device(batch, c)
    with c.runtime.autocast():
        outputs = _as_list(c.network(data))
        loss = c.loss(outputs, targets)
    counts = confusion_counts(outputs[0].float(), targets[0], c.labels.regions is not None, c.labels.ignore_label)
    return float(loss), torch.stack(counts).double().cpu()
