"""Learning-rate schedule (poly decay with optional linear warm-up) and fitting epochs to a time budget."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass

import torch


@dataclass(frozen=True)
class PolyLR:
    """nnU-Net's poly schedule, ``lr * (1 - epoch / total_epochs) ** exponent``, constant within an epoch.

    With ``warmup_epochs`` the learning rate first rises linearly per iteration from ``lr / N`` to ``lr`` over
    ``N = warmup_epochs * iterations`` steps, then decays polynomially over the remaining epochs.

    The schedule holds no epoch count: it is asked with the run's current total (``TrainingState.total_epochs``,
    the one holder, which a time budget may change during the run).
    """

    lr: float
    _: KW_ONLY
    exponent: float = 0.9
    warmup_epochs: int = 0

    def lr_at(self, epoch: int, total_epochs: int, iteration: int = 0, iterations_per_epoch: int = 1) -> float:
        """The learning rate of step ``iteration`` of ``epoch`` (0-based) in a run of ``total_epochs``."""
        if epoch < self.warmup_epochs:
            step = epoch * iterations_per_epoch + iteration + 1
            return self.lr * step / (self.warmup_epochs * iterations_per_epoch)
        decay_epochs = max(1, total_epochs - self.warmup_epochs)
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
