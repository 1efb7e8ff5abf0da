"""Where and how prediction runs: the device, and settings that change speed and memory but not the result.

The settings only reorder or regroup the same arithmetic (tiles per forward pass, mirrored variants in one
pass, passes side by side on CPU cores, oneDNN convolutions, channels-last layout), so label maps stay the same
and probabilities agree up to float rounding; the benchmark (``Testing/benchmarks/bench_predict.py``) checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from AutoSegNetLib.errors import AutoSegNetError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA if available, else Apple MPS, else CPU; other names are checked for availability."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise AutoSegNetError(f"Unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise AutoSegNetError("--device cuda was asked for, but this PyTorch has no usable CUDA GPU; use --device cpu.")
    if resolved.type == "mps" and not _mps_available():
        raise AutoSegNetError("--device mps was asked for, but Apple MPS is not available; use --device cpu.")
    return resolved


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


@dataclass(frozen=True)
class ComputeSettings:
    """How the sliding window computes; ``None`` means "the best choice for the device" (:meth:`resolved`).

    - ``tile_batch``: tiles per forward pass.
    - ``batch_mirrors``: the mirrored variants of those tiles share the forward pass (default: on accelerators;
      not on the CPU, where the larger batches only add memory traffic).
    - ``member_threads``: on the CPU, how many members (fold x mirrored variant) run side by side, sharing
      PyTorch's intra-op threads (default: 2 when PyTorch uses 2 or more threads), instead of splitting every
      operation of one pass between the cores. Costs the activation memory of that many passes.
    - ``onednn``: on the CPU, every convolution runs in oneDNN (see :mod:`AutoSegNetLib.inference.cpu_speed`).
    - ``channels_last``: on the CPU, weights, tiles and instance norms in channels-last layout (oneDNN's own;
      default on).
    """

    tile_batch: int = 1
    batch_mirrors: bool | None = None
    member_threads: int | None = None
    onednn: bool | None = None
    channels_last: bool | None = None

    def resolved(self, device: torch.device) -> ComputeSettings:
        cpu = device.type == "cpu"
        return replace(
            self,
            tile_batch=max(1, int(self.tile_batch)),
            batch_mirrors=(not cpu) if self.batch_mirrors is None else self.batch_mirrors,
            member_threads=(min(2, torch.get_num_threads()) if cpu else 1) if self.member_threads is None
            else max(1, int(self.member_threads)),
            onednn=cpu if self.onednn is None else (self.onednn and cpu),
            channels_last=cpu if self.channels_last is None else (self.channels_last and cpu),
        )


#: The straightforward way: one forward pass per tile and mirrored variant, one after the other, with the same
#: kernels as the default. With one intra-op thread it does exactly the arithmetic of the default CPU settings
#: (which run such single-threaded passes side by side), so their results are bitwise equal.
REFERENCE_COMPUTE = ComputeSettings(tile_batch=1, batch_mirrors=False, member_threads=1)

#: PyTorch's own choices: one pass at a time, every pass split over all intra-op threads, PyTorch's kernel
#: selection and layout (what nnU-Net does). Rounding differs from the default in the last bits.
PYTORCH_DEFAULT_COMPUTE = ComputeSettings(
    tile_batch=1, batch_mirrors=False, member_threads=1, onednn=False, channels_last=False
)
