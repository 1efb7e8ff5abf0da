"""Checkpoints: one versioned dict per file, written atomically (temporary file + rename).

Contents (``torch.save``): ``format``, ``version``, ``network_weights`` (state dict of the bare network),
``optimizer_state``, ``grad_scaler_state``, ``epoch`` (epochs completed), ``best_ema``, ``log`` (the
per-epoch log, plus ``in_progress`` when saved in the middle of an epoch), ``rng_state`` (Python, NumPy,
torch, CUDA and the batch counters), ``training_config``, ``configuration`` and
``inference_allowed_mirroring_axes``. Only our own files are loaded, with ``weights_only=False``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.utils.atomic import atomic_path

CHECKPOINT_FORMAT = "autosegnet-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


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
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "sampler": dict(batch_counters),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> dict[str, int]:
    """Restore what :func:`capture_rng_state` captured; returns the batch counters."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    return dict(state.get("sampler", {}))


def save_checkpoint(path: Path, **contents: Any) -> Path:
    """Write a checkpoint dict atomically; ``contents`` are the fields listed in the module docstring."""
    checkpoint = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **contents}
    with atomic_path(path, suffix=".pth") as tmp:
        torch.save(checkpoint, tmp)
    return Path(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and check a checkpoint written by :func:`save_checkpoint` (tensors on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise AutoSegNetError(f"Checkpoint {path} does not exist.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise AutoSegNetError(f"Checkpoint {path} cannot be read ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise AutoSegNetError(
            f"{path} is not an AutoSegNet checkpoint. nnU-Net model folders are read by `autosegnet import-nnunet`."
        )
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise AutoSegNetError(
            f"{path}: checkpoint version {checkpoint.get('version')!r} is not supported (this engine reads "
            f"version {CHECKPOINT_VERSION})."
        )
    return checkpoint


def newest_checkpoint(fold_folder: Path) -> Path | None:
    """The checkpoint ``--continue`` resumes from: the final one if training finished, else the more recently
    written of latest and best (a crash between periodic saves then loses less than nnU-Net's latest-first)."""
    folder = Path(fold_folder)
    if (folder / "checkpoint_final.pth").is_file():
        return folder / "checkpoint_final.pth"
    candidates = [folder / n for n in ("checkpoint_latest.pth", "checkpoint_best.pth") if (folder / n).is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None
