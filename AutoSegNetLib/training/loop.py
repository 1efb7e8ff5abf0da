"""The training loop: steps, epochs, and the run over epochs. Components come in, nothing is built here.

An epoch is ``iterations_per_epoch`` training steps on batches ``epoch * iterations + i`` of the train stream,
then ``val_iterations`` validation batches (loss and pseudo-Dice confusion counts). A stop request (SIGINT /
SIGTERM or a stop file, see :mod:`AutoSegNetLib.utils.stop`) is honoured after the current step, once every rank
agrees (:func:`any_rank`); the state then records the iteration reached, so resuming continues mid-epoch exactly
where training stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from AutoSegNetLib.training.config import TrainingConfig
from AutoSegNetLib.training.distributed import any_rank, broadcast_value, sum_over_ranks
from AutoSegNetLib.training.loader import BatchLoader
from AutoSegNetLib.training.progress_log import EpochRecord, TrainingLog
from AutoSegNetLib.training.schedule import fit_epochs_to_budget, set_learning_rate
from AutoSegNetLib.training.step import TrainingComponents, train_step, validation_step
from AutoSegNetLib.utils.stop import StopRequest


@dataclass
class TrainingState:
    """How far a run is: ``epoch`` epochs completed, ``iteration`` steps into the next one (with their losses
    and elapsed seconds), the planned total, the best EMA pseudo-Dice and the epoch log.

    ``total_epochs`` is the one holder of the number of epochs this run trains: the schedule is asked with it
    (:meth:`~AutoSegNetLib.training.schedule.PolyLR.lr_at`), checkpoints store it, and only a time budget changes
    it (:func:`run_training`). It starts at the epochs asked for (:attr:`LoopSettings.epochs`).
    """

    total_epochs: int
    epoch: int = 0
    iteration: int = 0
    partial_losses: list[float] = field(default_factory=list)
    partial_elapsed_s: float = 0.0
    best_ema: float | None = None
    log: TrainingLog = field(default_factory=TrainingLog)

    def batch_counters(self, iterations: int, val_iterations: int) -> dict[str, int]:
        """Index of the next batch of each stream (the sampler state: batches are functions of it)."""
        return {"train": self.epoch * iterations + self.iteration, "val": self.epoch * val_iterations}


@dataclass(frozen=True)
class LoopSettings:
    """The parts of the config the loop reads (:meth:`from_config`).

    ``epochs`` is the number asked for (``TrainingConfig.epochs``): where a run's total starts and the most a time
    budget (``time_budget_s``) lets it grow to. The run's current total lives in :attr:`TrainingState.total_epochs`.
    """

    iterations_per_epoch: int
    val_iterations: int
    epochs: int
    time_budget_s: float | None = None

    @classmethod
    def from_config(cls, config: TrainingConfig) -> LoopSettings:
        budget = config.time_budget_minutes
        return cls(config.iterations_per_epoch, config.val_iterations, config.epochs,
                   budget * 60 if budget else None)

    def resumed_total(self, saved_total: int | None) -> int:
        """The total epochs of a run resumed from a checkpoint that planned ``saved_total``: the epochs asked for
        now (``--continue --epochs N`` lengthens or shortens a run), or under a time budget the total fitted so
        far (fitted again after the next epoch)."""
        return self.epochs if self.time_budget_s is None or saved_total is None else int(saved_total)

    def fitted_total(self, state: TrainingState) -> int:
        """The total epochs that fit the time budget after the epochs in ``state.log`` (never more than
        :attr:`epochs`); the state's total when there is no budget."""
        if self.time_budget_s is None:
            return state.total_epochs
        times = state.log.epoch_times()
        return fit_epochs_to_budget(self.time_budget_s, sum(times), times, self.epochs)


class RunObserver:
    """Receives the loop's events (progress, checkpoints); the default does nothing."""

    def iteration(self, state: TrainingState, loss: float, lr: float) -> None: ...

    def epoch_end(self, state: TrainingState, record: EpochRecord) -> None: ...

    def stopped(self, state: TrainingState) -> None: ...


def train_epoch(c: TrainingComponents, loader: BatchLoader, state: TrainingState, settings: LoopSettings,
                stop: StopRequest, observer: RunObserver) -> bool:
    """Steps from ``state.iteration`` to the end of the epoch; False if stopped early (state then points at the
    next step)."""
    c.network.train()
    iterations = settings.iterations_per_epoch
    first = state.epoch * iterations
    indices = range(first + state.iteration, first + iterations)
    for batch in loader.batches("train", indices):
        lr = c.schedule.lr_at(state.epoch, state.total_epochs, state.iteration, iterations)
        set_learning_rate(c.optimizer, lr)
        loss = float(train_step(c, batch))
        state.partial_losses.append(loss)
        state.iteration += 1
        observer.iteration(state, loss, lr)
        if any_rank(stop.requested, c.runtime.device) and state.iteration < iterations:
            return False
    return True


def validate_epoch(c: TrainingComponents, loader: BatchLoader, state: TrainingState, settings: LoopSettings
                   ) -> tuple[float, list[float]]:
    """Mean validation loss and pseudo-Dice per foreground class (NaN where a class never occurred), summed
    over all ranks."""
    c.network.eval()
    counts = torch.zeros(3, len(c.labels.names), dtype=torch.float64)
    losses = torch.zeros(2, dtype=torch.float64)
    if "val" in loader.sources:
        first = state.epoch * settings.val_iterations
        for batch in loader.batches("val", range(first, first + settings.val_iterations)):
            loss, batch_counts = validation_step(c, batch)
            counts += batch_counts
            losses += torch.tensor([loss, 1.0], dtype=torch.float64)
    counts = sum_over_ranks(counts, c.runtime.device)
    losses = sum_over_ranks(losses, c.runtime.device)
    tp, fp, fn = counts.numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = (2 * tp / (2 * tp + fp + fn)).tolist()
    val_loss = float(losses[0] / losses[1]) if losses[1] > 0 else math.nan
    return val_loss, dice


def mean_train_loss(state: TrainingState, device: torch.device) -> float:
    totals = torch.tensor([sum(state.partial_losses), len(state.partial_losses)], dtype=torch.float64)
    totals = sum_over_ranks(totals, device)
    return float(totals[0] / totals[1]) if totals[1] > 0 else math.nan


def finish_epoch(c: TrainingComponents, state: TrainingState, val_loss: float, dice: list[float],
                 epoch_s: float) -> EpochRecord:
    """Log the epoch, update the EMA pseudo-Dice and reset the per-epoch state."""
    fg = [d for d in dice if not math.isnan(d)]
    mean_dice = float(np.mean(fg)) if fg else math.nan
    record = EpochRecord(
        epoch=state.epoch, train_loss=mean_train_loss(state, c.runtime.device), val_loss=val_loss,
        pseudo_dice=dict(zip(c.labels.names, dice)), mean_pseudo_dice=mean_dice,
        ema_pseudo_dice=state.log.next_ema(mean_dice), lr=float(c.optimizer.param_groups[0]["lr"]), epoch_s=epoch_s,
    )
    state.log.add(record)
    state.epoch += 1
    state.iteration = 0
    state.partial_losses = []
    state.partial_elapsed_s = 0.0
    return record


def run_training(c: TrainingComponents, loader: BatchLoader, state: TrainingState, settings: LoopSettings,
                 stop: StopRequest, observer: RunObserver, clock: Callable[[], float] = time.perf_counter) -> bool:
    """Train until ``state.total_epochs`` are done (True) or a stop request (False)."""
    while state.epoch < state.total_epochs:
        started = clock() - state.partial_elapsed_s
        if not train_epoch(c, loader, state, settings, stop, observer):
            state.partial_elapsed_s = clock() - started
            observer.stopped(state)
            return False
        val_loss, dice = validate_epoch(c, loader, state, settings)
        record = finish_epoch(c, state, val_loss, dice, clock() - started)
        if settings.time_budget_s is not None:  # every rank takes rank 0's measurement
            state.total_epochs = int(broadcast_value(settings.fitted_total(state)))
        observer.epoch_end(state, record)
        if any_rank(stop.requested, c.runtime.device) and state.epoch < state.total_epochs:
            observer.stopped(state)
            return False
    return True
