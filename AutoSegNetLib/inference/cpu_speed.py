"""Faster CPU inference without changing the network's function: oneDNN convolutions for every layer.

PyTorch's CPU convolution picks oneDNN (mkldnn) only for larger inputs and falls back to im2col + GEMM for a
batch of one with few voxels or channels (the deep U-Net stages, the 1-channel input layer), which is
several times slower there. :func:`use_onednn_convolutions` makes a network's convolutions call oneDNN directly
for float32 CPU tensors; results equal the default path up to float rounding.
"""

from __future__ import annotations

import types

import torch
from torch import nn

_CONVS = (nn.Conv2d, nn.Conv3d)


def onednn_available() -> bool:
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.aten, "mkldnn_convolution")


def use_onednn_convolutions(network: nn.Module) -> int:
    """Route the (non-transposed, zero-padded) convolutions of ``network`` to oneDNN for float32 CPU inputs
    without gradients; other inputs take PyTorch's usual path. Returns how many convolutions were switched."""
    if not onednn_available():
        return 0
    switched = 0
    for module in network.modules():
        if type(module) in _CONVS and module.padding_mode == "zeros" and not isinstance(module.padding, str):
            module.forward = types.MethodType(_onednn_forward, module)
            switched += 1
    return switched


def _onednn_forward(self: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    if x.device.type == "cpu" and x.dtype == torch.float32 and not (torch.is_grad_enabled() and x.requires_grad):
        return torch.ops.aten.mkldnn_convolution(
            _dense(x), self.weight, self.bias, list(self.padding), list(self.stride), list(self.dilation),
            self.groups,
        )  # fmt: skip
    return type(self).forward(self, x)


def _dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` in a dense layout oneDNN reads directly: as it is if contiguous or channels-last, else contiguous."""
    if x.is_contiguous() or (x.ndim == 5 and x.is_contiguous(memory_format=torch.channels_last_3d)):
        return x
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()
