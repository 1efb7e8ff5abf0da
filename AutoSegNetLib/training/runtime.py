"""Where and how tensors are computed: device choice, mixed precision, memory format."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from AutoSegNetLib.errors import AutoSegNetError


@dataclass(frozen=True)
class Runtime:
    """The device, the autocast dtype (None = full precision), whether a GradScaler is used, and whether
    tensors are kept channels-last."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    grad_scaler: bool = False
    channels_last: bool = False

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.amp_dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            yield

    def memory_format(self, ndim: int) -> torch.memory_format:
        if not self.channels_last:
            return torch.contiguous_format
        return torch.channels_last_3d if ndim == 5 else torch.channels_last


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` = CUDA if available, else MPS, else CPU; with several GPUs, ``cuda:local_rank``."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise AutoSegNetError("Device 'cuda' was requested but PyTorch sees no CUDA GPU. Use --device cpu.")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise AutoSegNetError("Device 'mps' was requested but is not available. Use --device cpu.")
    return torch.device(name)


def make_runtime(device_name: str, amp: str, channels_last: bool | None, local_rank: int = 0) -> Runtime:
    """``amp``: ``auto`` = float16 + GradScaler on CUDA, none elsewhere; ``fp16`` / ``bf16`` / ``off`` force it.
    ``channels_last`` None = on for the CPU (faster oneDNN convolutions), off elsewhere."""
    device = pick_device(device_name, local_rank)
    if channels_last is None:
        channels_last = device.type == "cpu"
    if amp == "auto":
        amp = "fp16" if device.type == "cuda" else "off"
    if amp == "fp16" and device.type == "cpu":
        raise AutoSegNetError("float16 autocast is not supported for training on the CPU; use --amp bf16 or off.")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "off": None}[amp]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return Runtime(device, dtype, grad_scaler=dtype == torch.float16 and device.type == "cuda",
                   channels_last=channels_last)
