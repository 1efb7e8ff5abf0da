"""The per-epoch training log: ``progress.json`` (machine-readable), ``training_log.txt`` and ``progress.png``.

One :class:`EpochRecord` per finished epoch. The exponential moving average of the mean foreground
pseudo-Dice (``ema = 0.9 * ema + 0.1 * dice``, nnU-Net's rule) selects the best checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from AutoSegNetLib.utils.atomic import atomic_path, write_json

PROGRESS_FORMAT = "autosegnet-progress"


@dataclass
class EpochRecord:
    """What one epoch produced. ``pseudo_dice``: per foreground class (or region) name, NaN when the class
    was absent from both prediction and reference in all validation batches. Times in seconds."""

    epoch: int
    train_loss: float
    val_loss: float
    pseudo_dice: dict[str, float]
    mean_pseudo_dice: float
    ema_pseudo_dice: float
    lr: float
    epoch_s: float
    time: float = field(default_factory=time.time)


@dataclass
class TrainingLog:
    """All epoch records so far, in order."""

    epochs: list[EpochRecord] = field(default_factory=list)

    def next_ema(self, mean_dice: float) -> float:
        """EMA after adding ``mean_dice`` (the first value starts the average; NaN counts as 0)."""
        value = 0.0 if math.isnan(mean_dice) else mean_dice
        if not self.epochs:
            return value
        return 0.9 * self.epochs[-1].ema_pseudo_dice + 0.1 * value

    def add(self, record: EpochRecord) -> None:
        self.epochs.append(record)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN written as null)."""
        return {"format": PROGRESS_FORMAT, "epochs": [json_safe(dataclasses.asdict(r)) for r in self.epochs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingLog:
        records = []
        for r in data.get("epochs", []):
            r = dict(r, pseudo_dice={k: _nan_if_none(v) for k, v in r["pseudo_dice"].items()})
            records.append(EpochRecord(**{k: _nan_if_none(v) if k != "pseudo_dice" else v for k, v in r.items()}))
        return cls(records)

    def epoch_times(self) -> list[float]:
        return [r.epoch_s for r in self.epochs]


def json_safe(value: Any) -> Any:
    """``value`` with NaN / infinite floats replaced by None (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _nan_if_none(value: Any) -> Any:
    return math.nan if value is None else value


def write_progress_json(log: TrainingLog, path: Path) -> None:
    write_json(path, log.to_dict())


def plot_progress(log: TrainingLog, path: Path) -> None:
    """``progress.png``: losses and pseudo-Dice per class (with its EMA), epoch time, learning rate.

    Drawn on a bare ``Figure`` (rendered by Agg for PNG), so no pyplot state or global backend is touched in a
    host application.
    """
    from matplotlib.figure import Figure

    epochs = [r.epoch for r in log.epochs]
    figure = Figure(figsize=(10, 11), dpi=80)
    loss_ax, time_ax, lr_ax = figure.subplots(3, 1)
    loss_ax.plot(epochs, [r.train_loss for r in log.epochs], color="b", label="train loss")
    loss_ax.plot(epochs, [r.val_loss for r in log.epochs], color="r", label="val loss")
    dice_ax = loss_ax.twinx()
    names = list(log.epochs[-1].pseudo_dice) if log.epochs else []
    for name in names:
        dice_ax.plot(epochs, [r.pseudo_dice.get(name, math.nan) for r in log.epochs], ls=":", label=f"dice {name}")
    dice_ax.plot(epochs, [r.ema_pseudo_dice for r in log.epochs], color="g", label="pseudo dice (EMA)")
    loss_ax.set(xlabel="epoch", ylabel="loss")
    dice_ax.set_ylabel("pseudo dice")
    loss_ax.legend(loc="upper left")
    dice_ax.legend(loc="upper right")
    time_ax.plot(epochs, [r.epoch_s for r in log.epochs], color="b")
    time_ax.set(xlabel="epoch", ylabel="epoch time (s)")
    lr_ax.plot(epochs, [r.lr for r in log.epochs], color="b")
    lr_ax.set(xlabel="epoch", ylabel="learning rate")
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp)


class TextLog:
    """``training_log.txt``: human-readable lines with a timestamp, appended as training goes."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path else None

    def write(self, message: str) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a") as handle:
            handle.write(f"{stamp}: {message}\n")
