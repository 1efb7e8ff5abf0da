"""Checkpoints: one versioned dict per file, written atomically (temporary file, fsync, rename).

Contents (``torch.save``): ``format``, ``version``, ``network_weights`` (state dict of the bare network),
``optimizer_state``, ``grad_scaler_state``, ``epoch`` (epochs completed), ``best_ema``, ``log`` (the
per-epoch log, plus ``in_progress`` when saved in the middle of an epoch), ``rng_state`` (Python, NumPy,
torch, CUDA and the batch counters), ``training_config``, ``configuration`` and
``inference_allowed_mirroring_axes``. All of it is tensors and plain data (the NumPy random state is stored as a
list of numbers), so files load with ``torch.load(weights_only=True)``; reading and writing go through
:mod:`AutoSegNetLib.utils.checkpoint_io`, which refuses files that would run code. Each save first removes the
temporaries of checkpoint writers that died (a SIGKILL during a save).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from AutoSegNetLib.layout import CHECKPOINT_FORMAT, CHECKPOINT_KINDS, CHECKPOINT_VERSION, checkpoint_file_name
from AutoSegNetLib.utils.atomic import remove_stale_temporaries
from AutoSegNetLib.utils.checkpoint_io import read_checkpoint, write_checkpoint


def bare_network(network: nn.Module) -> nn.Module:
    """The network inside DDP and ``torch.compile`` wrappers."""
    while True:
        if hasattr(network, "module"):
            network = network.module
        elif hasattr(network, "_orig_mod"):
            network = network._orig_mod
        else:
            return network


def capture_rng_state(batch_counters: dict[str, int]) -> dict[str, Any]:
    """The state of every random generator training uses, and the batch counters of the data streams."""
    state = {
        "python": random.getstate(),
        "numpy": _plain_numpy_state(np.random.get_state()),
        "torch": torch.get_rng_state(),
        "sampler": dict(batch_counters),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> dict[str, int]:
    """Restore what :func:`capture_rng_state` captured; returns the batch counters."""
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))  # keys: a list, or an old array
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU visible when saving; restore those that exist now (resuming on fewer GPUs must work)
        for device, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)
    return dict(state.get("sampler", {}))


def _plain_numpy_state(state: tuple) -> tuple:
    """NumPy's legacy random state with the key array as a list of ints (no NumPy objects in checkpoints)."""
    name, keys, *rest = state
    return (name, [int(k) for k in keys], *(v.item() if isinstance(v, np.generic) else v for v in rest))


def save_checkpoint(path: Path, **contents: Any) -> Path:
    """Write a checkpoint dict atomically; ``contents`` are the fields listed in the module docstring.

    Temporaries left in the folder by checkpoint writers that died are removed first.
    """
    path = Path(path)
    remove_stale_checkpoint_temporaries(path.parent)
    return write_checkpoint(path, {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **contents})


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and check a checkpoint written by :func:`save_checkpoint` (tensors on the CPU); errors name the file."""
    return read_checkpoint(path)


def remove_stale_checkpoint_temporaries(fold_folder: Path) -> list[Path]:
    """Delete the half-written temporaries of the checkpoints (every kind of
    :data:`~AutoSegNetLib.layout.CHECKPOINT_KINDS`) whose writers died; returns them."""
    folder = Path(fold_folder)
    return [p for kind in CHECKPOINT_KINDS for p in remove_stale_temporaries(folder / checkpoint_file_name(kind))]


def newest_checkpoint(fold_folder: Path) -> Path | None:
    """The checkpoint ``--continue`` resumes from: the final one if training finished, else the more recently
    written of latest and best (a crash between periodic saves then loses less than nnU-Net's latest-first)."""
    folder = Path(fold_folder)
    if (folder / checkpoint_file_name("final")).is_file():
        return folder / checkpoint_file_name("final")
    candidates = [folder / checkpoint_file_name(k) for k in ("latest", "best")]
    candidates = [p for p in candidates if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None
