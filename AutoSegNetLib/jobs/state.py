"""What is known about a running engine job, read from its progress events (``--progress json`` lines).

Pure functions and one dataclass: no processes, no files, no MRML; the job followers feed events in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RUNNING, FINISHED, FAILED, STOPPED = "running", "finished", "failed", "stopped"


@dataclass
class JobState:
    """What is known about a job, updated from its events."""

    status: str = RUNNING
    stage: str = ""
    message: str = ""
    fraction: float | None = None
    epoch: int | None = None
    epochs: int | None = None
    eta_s: float | None = None
    train_loss: float | None = None
    pseudo_dice: Any = None  # per class: {label name: Dice} (or a list)
    return_code: int | None = None
    last_event: dict | None = None
    history: list[dict] = field(default_factory=list)  # the "epoch" events, for curves

    def update(self, event: dict) -> None:
        self.last_event = event
        kind = event.get("event")
        if kind == "stage" or "stage" in event:
            self.stage = str(event.get("stage") or event.get("name") or self.stage)
        if event.get("message"):
            self.message = str(event["message"])
        for key in ("epoch", "epochs", "eta_s", "train_loss", "pseudo_dice"):
            if key in event:
                setattr(self, key, event[key])
        if kind == "epoch":
            self.history.append(event)
        fraction = progress_fraction(event)
        if fraction is not None:
            self.fraction = fraction

    def describe(self) -> str:
        """One line for the GUI: stage, epoch, ETA, loss, pseudo-Dice."""
        parts = [self.status if self.status != RUNNING else (self.stage or "running")]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}" + (f"/{self.epochs}" if self.epochs else ""))
        if self.eta_s:
            parts.append(f"ETA {format_seconds(self.eta_s)}")
        if isinstance(self.train_loss, (int, float)):
            parts.append(f"loss {self.train_loss:.4f}")
        dice = mean_dice(self.pseudo_dice)
        if dice is not None:
            parts.append(f"pseudo-Dice {dice:.3f}")
        if self.message and self.status != RUNNING:
            parts.append(self.message)
        return " · ".join(parts)


def progress_fraction(event: dict) -> float | None:
    """Fraction done (0..1) that an event implies, if any."""
    if isinstance(event.get("fraction"), (int, float)):
        return max(0.0, min(1.0, float(event["fraction"])))
    if event.get("event") == "done":
        return 1.0
    if event.get("event") == "iteration" and all(isinstance(event.get(k), (int, float)) and event[k] > 0
                                                  for k in ("epoch", "epochs", "iterations")):
        done = event["epoch"] - 1 + event.get("iteration", 0) / event["iterations"]  # "epoch" is the running one
        return max(0.0, min(1.0, done / event["epochs"]))
    for done_key, total_key in (("epoch", "epochs"), ("iteration", "iterations"), ("index", "total"),
                                ("current", "total"), ("case_index", "num_cases")):
        done, total = event.get(done_key), event.get(total_key)
        if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
            return max(0.0, min(1.0, float(done) / float(total)))
    return None


def mean_dice(dice: Any) -> float | None:
    """Mean of per-class pseudo-Dice given as a list or a ``{label: dice}`` dict (NaN entries skipped)."""
    values = list(dice.values()) if isinstance(dice, dict) else dice
    if isinstance(values, list):
        numbers = [float(v) for v in values if isinstance(v, (int, float)) and v == v]
        return sum(numbers) / len(numbers) if numbers else None
    return float(values) if isinstance(values, (int, float)) else None


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
