"""Learning-rate schedule (poly decay with optional linear warm-up) and fitting epochs to a time budget."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class PolyLR:
    """nnU-Net's poly schedule, ``lr * (1 - epoch / epochs) ** exponent``, constant within an epoch.

    With ``warmup_epochs`` the learning rate first rises linearly per iteration from ``lr / N`` to ``lr`` over
    ``N = warmup_epochs * iterations`` steps, then decays polynomially over the remaining epochs.
    """

    lr: float
    epochs: int
    exponent: float = 0.9
    warmup_epochs: int = 0

    def at(self, epoch: int, iteration: int = 0, iterations_per_epoch: int = 1) -> float:
        if epoch < self.warmup_epochs:
            step = epoch * iterations_per_epoch + iteration + 1
            return self.lr * step / (self.warmup_epochs * iterations_per_epoch)
        decay_epochs = max(1, self.epochs - self.warmup_epochs)
        progress = min(1.0, (epoch - self.warmup_epochs) / decay_epochs)
        return self.lr * (1 - progress) ** self.exponent


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def fit_epochs_to_budget(budget_s: float, elapsed_s: float, epoch_times_s: Sequence[float], max_epochs: int) -> int:
    """Total epochs that fit in ``budget_s`` seconds given the epochs done so far and their durations.

    The first epoch is left out of the estimate once a second one exists (it carries start-up costs). Never
    fewer than the epochs already done, never more than ``max_epochs``.
    """
    done = len(epoch_times_s)
    if done == 0:
        return max_epochs
    sample = list(epoch_times_s[1:]) if done > 1 else list(epoch_times_s)
    per_epoch = max(sum(sample) / len(sample), 1e-6)
    remaining = max(0.0, budget_s - elapsed_s)
    return int(min(max_epochs, done + math.floor(remaining / per_epoch)))
