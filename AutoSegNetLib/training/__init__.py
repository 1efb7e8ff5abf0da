"""Training: the nnU-Net v2 recipe as small parts (config, sampling, augmentation, loss, loop, checkpoints).

Entry point: :func:`train` (``autosegnet train DATASET CONFIGURATION FOLD``). Hyper-parameters live in
:class:`TrainingConfig`; multi-process runs take a :class:`DistributedSettings`. The heavy parts (torch,
batchgenerators) are imported on first use, so importing the config (e.g. to build the CLI) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from AutoSegNetLib.training.config import FINETUNE_OVERRIDES, TrainingConfig

_LAZY = {
    "train": "AutoSegNetLib.training.entry",
    "train_in_processes": "AutoSegNetLib.training.entry",
    "saved_training_config": "AutoSegNetLib.training.entry",
    "DistributedSettings": "AutoSegNetLib.training.distributed",
}

__all__ = ["FINETUNE_OVERRIDES", "DistributedSettings", "TrainingConfig", "saved_training_config", "train",
           "train_in_processes"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
