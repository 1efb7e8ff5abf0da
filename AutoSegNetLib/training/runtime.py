"""Where and how tensors are computed: device choice, mixed precision, memory format."""

from __future__ import annotations

import contextlib
import logging
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from AutoSegNetLib.errors import AutoSegNetError

log = logging.getLogger(__name__)
CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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
    if amp == "bf16" and device.type == "cpu" and native_cpu_bf16() is False:
        log.warning("This CPU has no native bfloat16 instructions (AVX512-BF16 or AMX): --amp bf16 is emulated "
                    "and slower than float32 here; use --amp off.")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return Runtime(device, dtype, grad_scaler=dtype == torch.float16 and device.type == "cuda",
                   channels_last=channels_last)


def native_cpu_bf16(cpuinfo: Path = CPUINFO) -> bool | None:
    """Whether the CPU computes bfloat16 natively (an AVX512-BF16 or AMX flag in ``/proc/cpuinfo``); None where
    that cannot be read (not Linux). Decision 0024: bf16 autocast pays only on such CPUs."""
    if platform.system() != "Linux" or not cpuinfo.is_file():
        return None
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("flags")), [])
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)
