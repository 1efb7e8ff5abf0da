"""What a run leaves in its fold folder and tells the world: checkpoints, logs, plot, progress events.

Only the main rank writes files and emits events; every rank keeps the same bookkeeping (best EMA) so that
all ranks take the same decisions.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from AutoSegNetLib.layout import PROGRESS_FILE, PROGRESS_PLOT_FILE, TRAINING_LOG_FILE, checkpoint_file_name
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.training.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint
from AutoSegNetLib.training.config import TrainingConfig
from AutoSegNetLib.training.loop import LoopSettings, RunObserver, TrainingState
from AutoSegNetLib.training.progress_log import (
    EpochRecord,
    TextLog,
    TrainingLog,
    json_safe,
    plot_progress,
    write_progress_json,
)
from AutoSegNetLib.training.step import TrainingComponents

log = logging.getLogger(__name__)
#: progress.png is redrawn at most this often (drawing takes about a second on a slow CPU), and at the end.
PLOT_INTERVAL_S = 30.0


def checkpoint_contents(c: TrainingComponents, state: TrainingState, config: TrainingConfig, configuration: str,
                        mirror_axes: Sequence[int]) -> dict[str, Any]:
    """The checkpoint dict (see :mod:`AutoSegNetLib.training.checkpoint`) for the current state."""
    in_progress = None
    if state.iteration:
        in_progress = {"iteration": state.iteration, "train_losses": list(state.partial_losses),
                       "elapsed_s": state.partial_elapsed_s}
    return {
        "network_weights": c.model.state_dict(),
        "optimizer_state": c.optimizer.state_dict(),
        "grad_scaler_state": c.scaler.state_dict() if c.scaler is not None else None,
        "epoch": state.epoch,
        "best_ema": state.best_ema,
        "log": {**state.log.to_dict(), "total_epochs": state.total_epochs, "in_progress": in_progress},
        "rng_state": capture_rng_state(state.batch_counters(config.iterations_per_epoch, config.val_iterations)),
        "training_config": config.to_dict(),
        "configuration": configuration,
        "inference_allowed_mirroring_axes": list(mirror_axes),
    }


def restore_state(c: TrainingComponents, checkpoint: dict[str, Any], settings: LoopSettings) -> TrainingState:
    """Load weights, optimiser, scaler and RNG states into ``c``; return the saved progress, with the total epochs
    ``settings`` give a resumed run (:meth:`~AutoSegNetLib.training.loop.LoopSettings.resumed_total`)."""
    c.model.load_state_dict(checkpoint["network_weights"])
    c.optimizer.load_state_dict(checkpoint["optimizer_state"])
    if c.scaler is not None and checkpoint.get("grad_scaler_state"):
        c.scaler.load_state_dict(checkpoint["grad_scaler_state"])
    saved_log = checkpoint["log"]
    progress = saved_log.get("in_progress") or {}
    restore_rng_state(checkpoint["rng_state"])
    return TrainingState(
        total_epochs=settings.resumed_total(saved_log.get("total_epochs")), epoch=int(checkpoint["epoch"]),
        iteration=int(progress.get("iteration", 0)), partial_losses=list(progress.get("train_losses", [])),
        partial_elapsed_s=float(progress.get("elapsed_s", 0.0)), best_ema=checkpoint.get("best_ema"),
        log=TrainingLog.from_dict(saved_log),
    )


class FoldOutputs(RunObserver):
    """Writes ``checkpoint_*.pth``, ``progress.json``, ``progress.png``, ``training_log.txt`` and emits events."""

    def __init__(self, fold_folder: Path, reporter: ProgressReporter, components: TrainingComponents,
                 config: TrainingConfig, configuration: str, mirror_axes: Sequence[int], is_main: bool = True) -> None:
        self.folder = Path(fold_folder)
        self.reporter = reporter
        self.c = components
        self.config = config
        self.configuration = configuration
        self.mirror_axes = list(mirror_axes)
        self.is_main = is_main
        self.text = TextLog(self.folder / TRAINING_LOG_FILE if is_main else None)
        self._last_plot = time.monotonic()

    # ----- loop events -----------------------------------------------------------------------------------
    def iteration(self, state: TrainingState, loss: float, lr: float) -> None:
        iterations = self.config.iterations_per_epoch
        if self.is_main and (state.iteration % self.config.iteration_event_every == 0 or state.iteration == iterations):
            self.reporter.emit("iteration", epoch=state.epoch + 1, epochs=state.total_epochs,
                               iteration=state.iteration, iterations=iterations, train_loss=loss, lr=lr)

    def epoch_end(self, state: TrainingState, record: EpochRecord) -> None:
        improved = state.best_ema is None or record.ema_pseudo_dice > state.best_ema
        if improved:
            state.best_ema = record.ema_pseudo_dice
        if not self.is_main:
            return
        self.text.write(
            f"epoch {state.epoch}/{state.total_epochs}: train loss {record.train_loss:.4f}, val loss "
            f"{record.val_loss:.4f}, pseudo dice {_fmt(record.pseudo_dice)}, EMA {record.ema_pseudo_dice:.4f}, "
            f"lr {record.lr:.3g}, {record.epoch_s:.1f} s"
        )
        write_progress_json(state.log, self.folder / PROGRESS_FILE)
        if time.monotonic() - self._last_plot >= PLOT_INTERVAL_S:
            self.plot(state)
        self.reporter.emit("epoch", **json_safe({
            "epoch": state.epoch, "epochs": state.total_epochs, "train_loss": record.train_loss,
            "val_loss": record.val_loss, "pseudo_dice": record.pseudo_dice, "mean_pseudo_dice": record.mean_pseudo_dice,
            "ema_pseudo_dice": record.ema_pseudo_dice, "lr": record.lr, "epoch_s": round(record.epoch_s, 3),
            "eta_s": round(self._eta(state), 1),
        }))
        if improved:
            self.save("best", state)
        if state.epoch % self.config.save_every == 0 and state.epoch < state.total_epochs:
            self.save("latest", state)

    def stopped(self, state: TrainingState) -> None:
        if self.is_main:
            self.text.write(f"stop requested: saving at epoch {state.epoch}, iteration {state.iteration}")
            self.plot(state)
        self.save("latest", state)

    # ----- files -------------------------------------------------------------------------------------------
    def save(self, kind: str, state: TrainingState) -> Path:
        path = self.folder / checkpoint_file_name(kind)
        if not self.is_main:
            return path
        save_checkpoint(path, **checkpoint_contents(self.c, state, self.config, self.configuration, self.mirror_axes))
        self.text.write(f"saved {path.name}")
        self.reporter.emit("checkpoint", kind=kind, path=str(path), epoch=state.epoch, iteration=state.iteration)
        return path

    def plot(self, state: TrainingState) -> None:
        """Redraw ``progress.png`` (main rank; a plotting problem never stops training)."""
        if not self.is_main or not state.log.epochs:
            return
        try:
            plot_progress(state.log, self.folder / PROGRESS_PLOT_FILE)
        except Exception as exc:
            log.warning("Could not draw progress.png: %s", exc)
        self._last_plot = time.monotonic()

    @staticmethod
    def _eta(state: TrainingState) -> float:
        recent = state.log.epoch_times()[-5:]
        return (sum(recent) / len(recent)) * (state.total_epochs - state.epoch) if recent else math.nan


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in values.items())

