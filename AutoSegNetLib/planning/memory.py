"""GPU memory: the network's feature-map count for a patch, and the GPU memory target.

The planner does not measure memory. It counts the feature-map elements a network produces for one patch
(:meth:`DynamicUNet.feature_map_size`, the same count as dynamic-network-architectures'
``compute_conv_feature_map_size``) and compares that with a reference count known to fit a reference
batch size in the reference GPU memory (e.g. 560e6 elements = batch 2 of a 3D U-Net in 8 GB).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: ``(network spec as a hashable key, patch) -> feature-map elements``; networks are rebuilt only for new keys.
_CACHE: dict[tuple, int] = {}


def feature_map_size(network: dict[str, Any], patch_size: tuple[int, ...], input_channels: int,
                     num_outputs: int) -> int:
    """Feature-map elements (batch size 1) of the network described by ``network`` for ``patch_size``.

    ``network`` is a :class:`~AutoSegNetLib.network.NetworkSpec` in dict form. The network is built on
    PyTorch's ``meta`` device (no weights are allocated) without deep supervision, as nnU-Net estimates it.
    """
    key = (_freeze(network), tuple(int(p) for p in patch_size), input_channels, num_outputs)
    if key not in _CACHE:
        import torch

        from AutoSegNetLib.network import build_network

        with torch.device("meta"):
            net = build_network(network, input_channels, num_outputs, deep_supervision=False, initialize=False)
        _CACHE[key] = int(net.feature_map_size(list(key[1])))
    return _CACHE[key]


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def detect_gpu_memory_gb() -> float | None:
    """Total memory of CUDA device 0 in GiB (one decimal), or None without a CUDA GPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not torch.cuda.is_available():
        return None
    total = torch.cuda.get_device_properties(0).total_memory
    return round(total / 2**30, 1)


def resolve_gpu_memory_gb(value: float | str | None, planner_default: float) -> float:
    """The GPU memory target in GB: ``None`` -> the planner's default, a number -> itself, ``"auto"`` -> the
    local GPU's memory (the planner's default, with a log line, when there is no CUDA GPU)."""
    from AutoSegNetLib.errors import AutoSegNetError

    if value is None:
        return float(planner_default)
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            detected = detect_gpu_memory_gb()
            if detected is None:
                log.info("--gpu-memory-gb auto: no CUDA GPU found; planning for the default %.4g GB.", planner_default)
                return float(planner_default)
            log.info("--gpu-memory-gb auto: GPU 0 has %.1f GB; planning for that.", detected)
            return detected
        try:
            value = float(value)
        except ValueError:
            raise AutoSegNetError(f"GPU memory must be a number of GB or 'auto', got {value!r}.") from None
    if not value > 0:
        raise AutoSegNetError(f"GPU memory target must be positive (GB), got {value!r}.")
    return float(value)
