"""``TrainingConfig``: every training hyper-parameter in one dataclass (defaults equal nnU-Net v2's).

Nothing in the training package hard-codes a hyper-parameter: the loop, the loss, the schedule and the
data pipeline all read this object. The CLI overrides single fields; ``from_dict`` rejects unknown keys so a
typo in a saved or hand-written config is an error, not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from AutoSegNetLib.errors import AutoSegNetError, did_you_mean

DEVICES = ("auto", "cuda", "cpu", "mps")
AMP_MODES = ("auto", "fp16", "bf16", "off")
START_METHODS = ("auto", "fork", "spawn", "forkserver")

#: Fields changed for ``--pretrained`` fine-tuning unless given explicitly: a short schedule with warm-up
#: (the retrain step of annotate-correct-retrain takes minutes on a GPU, not hours).
FINETUNE_OVERRIDES: dict[str, Any] = {"epochs": 25, "warmup_epochs": 3}


@dataclass
class TrainingConfig:
    """Hyper-parameters of one training run.

    Schedule: ``epochs`` x ``iterations_per_epoch`` training steps, ``val_iterations`` validation batches per
    epoch; SGD (``lr``, ``momentum``, ``nesterov``, ``weight_decay``) with poly decay
    ``lr * (1 - epoch / epochs) ** poly_exponent`` after ``warmup_epochs`` of linear warm-up; gradient norm
    clipped to ``grad_clip``. ``batch_size`` / ``patch_size`` (voxels, per axis in the plan's axis order)
    override the plan's when set. ``oversample_foreground`` is the fraction of each batch centred on a
    foreground voxel. ``num_workers`` background data processes (None: 0 on CPU, up to 8 with a GPU).
    ``time_budget_minutes`` fits the number of epochs to the wall-clock budget after measuring the first
    epochs. ``amp``: ``auto`` = float16 autocast + GradScaler on CUDA, off elsewhere. ``channels_last`` and
    ``fast_norm`` (InstanceNorm computed by the equivalent GroupNorm kernel) default to on for the CPU only
    (None = auto); they change speed, not results beyond float rounding.
    """

    epochs: int = 1000
    iterations_per_epoch: int = 250
    val_iterations: int = 50
    lr: float = 1e-2
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    warmup_epochs: int = 0
    grad_clip: float = 12.0
    oversample_foreground: float = 0.33
    batch_size: int | None = None
    patch_size: list[int] | None = None
    augmentation: bool = True
    deep_supervision: bool = True
    num_workers: int | None = None
    worker_start_method: str = "auto"
    worker_timeout_s: float = 600.0
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    compile: bool = False
    channels_last: bool | None = None
    fast_norm: bool | None = None
    save_every: int = 50
    time_budget_minutes: float | None = None
    final_validation: bool = True
    iteration_event_every: int = 10

    def __post_init__(self) -> None:
        self.validate()

    # ----- checks --------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`AutoSegNetError` naming the field for an impossible value."""
        positive_ints = ("epochs", "iterations_per_epoch", "save_every", "iteration_event_every")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _error(name, f"must be a positive integer, got {value!r}")
        for name in ("val_iterations", "warmup_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _error(name, f"must be a non-negative integer, got {value!r}")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise _error("warmup_epochs", f"({self.warmup_epochs}) must be smaller than epochs ({self.epochs})")
        if not 0.0 <= float(self.oversample_foreground) <= 1.0:
            raise _error("oversample_foreground", f"must be within [0, 1], got {self.oversample_foreground!r}")
        if float(self.lr) <= 0 or float(self.grad_clip) <= 0:
            raise _error("lr" if float(self.lr) <= 0 else "grad_clip", "must be positive")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise _error("batch_size", f"must be a positive integer or null (plan's), got {self.batch_size!r}")
        if self.patch_size is not None and (
            not isinstance(self.patch_size, (list, tuple)) or not all(isinstance(p, int) and p > 0
                                                                     for p in self.patch_size)
        ):
            raise _error("patch_size", f"must be a list of positive integers or null, got {self.patch_size!r}")
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise _error("num_workers", f"must be a non-negative integer or null (auto), got {self.num_workers!r}")
        _choice("device", self.device, DEVICES)
        _choice("amp", self.amp, AMP_MODES)
        _choice("worker_start_method", self.worker_start_method, START_METHODS)
        if self.time_budget_minutes is not None and float(self.time_budget_minutes) <= 0:
            raise _error("time_budget_minutes", f"must be positive, got {self.time_budget_minutes!r}")

    # ----- (de)serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "training config") -> TrainingConfig:
        """Build from a mapping; unknown keys raise an error with the closest known name."""
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise AutoSegNetError(
                    f"{source}: unknown training setting {key!r}.{did_you_mean(key, known)} "
                    f"Known settings: {', '.join(known)}."
                )
        return cls(**data)

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with ``changes`` applied (validated; unknown names raise)."""
        return TrainingConfig.from_dict({**self.to_dict(), **changes})


def _error(name: str, problem: str) -> AutoSegNetError:
    return AutoSegNetError(f"Training setting {name!r} {problem}.")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _error(name, f"must be one of {', '.join(choices)}, got {value!r}.{did_you_mean(str(value), choices)}")
