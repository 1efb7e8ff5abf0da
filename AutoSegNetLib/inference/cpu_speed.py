"""Faster CPU inference without changing the network's function: channels-last tensors, oneDNN convolutions.

- Channels-last (``NDHWC``) is oneDNN's native layout: convolutions skip the reorders to and from its blocked
  layout that plain ``NCDHW`` tensors need around every layer.
- PyTorch's instance norm copies a channels-last input to ``NCDHW`` and returns ``NCDHW`` (so the next
  convolution reorders it back): :func:`use_channels_last_instance_norm` normalises in place of the layout with
  the same two-pass statistics (mean, then the mean squared deviation), as accurate as PyTorch's (~1e-6).
- PyTorch's CPU convolution picks oneDNN (mkldnn) only for larger inputs and falls back to im2col + GEMM for a
  batch of one with few voxels or channels (the deep U-Net stages, the 1-channel input layer).
  :func:`use_onednn_convolutions` makes a network's convolutions call oneDNN directly for float32 CPU tensors.

All of them only change the rounding of the results (about 1e-6 on probabilities). One pass of the Hippocampus
network on one thread: PyTorch's defaults 1.07 s, oneDNN 0.73 s, + channels-last 0.60 s, + the channels-last
instance norm 0.47 s (``Testing/benchmarks/bench_predict.py`` measures whole predictions).
"""

from __future__ import annotations

import types

import torch
from torch import nn

_CONVS = (nn.Conv2d, nn.Conv3d)
_INSTANCE_NORMS = (nn.InstanceNorm2d, nn.InstanceNorm3d)


#: Attribute a prepared network carries: the memory format its inputs are converted to.
MEMORY_FORMAT_ATTRIBUTE = "inference_memory_format"


def prepare_for_cpu(network: nn.Module, onednn: bool, channels_last: bool) -> nn.Module:
    """Switch ``network`` (in place) to oneDNN convolutions and/or channels-last weights and instance norms;
    returns it.

    With ``channels_last`` the network records the memory format (:data:`MEMORY_FORMAT_ATTRIBUTE`) so the
    sliding window converts its tiles to match.
    """
    if onednn:
        use_onednn_convolutions(network)
    if channels_last:
        ndim = next((m.weight.ndim - 2 for m in network.modules() if type(m) in _CONVS), None)
        memory_format = {3: torch.channels_last_3d, 2: torch.channels_last}.get(ndim)
        if memory_format is not None:
            network.to(memory_format=memory_format)
            setattr(network, MEMORY_FORMAT_ATTRIBUTE, memory_format)
            use_channels_last_instance_norm(network)
    return network


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
        )
    return type(self).forward(self, x)


def _dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` in a dense layout oneDNN reads directly: as it is if contiguous or channels-last, else contiguous."""
    if x.is_contiguous() or (x.ndim == 5 and x.is_contiguous(memory_format=torch.channels_last_3d)):
        return x
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()


def use_channels_last_instance_norm(network: nn.Module) -> int:
    """Make the instance norms of ``network`` keep channels-last CPU inputs channels-last (see the module
    docstring) when no gradient is needed; other inputs take PyTorch's path. Returns how many were switched."""
    switched = 0
    for module in network.modules():
        if type(module) in _INSTANCE_NORMS and not module.track_running_stats:
            module.forward = types.MethodType(_channels_last_instance_norm_forward, module)
            switched += 1
    return switched


def _channels_last_instance_norm_forward(self: nn.InstanceNorm3d, x: torch.Tensor) -> torch.Tensor:
    memory_format = torch.channels_last_3d if x.ndim == 5 else torch.channels_last
    if (
        x.device.type != "cpu" or x.ndim not in (4, 5) or not x.is_contiguous(memory_format=memory_format)
        or x.is_contiguous() or (torch.is_grad_enabled() and x.requires_grad)
    ):
        return type(self).forward(self, x)
    return channels_last_instance_norm(x, self.weight, self.bias, self.eps)


def channels_last_instance_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """Instance norm of a channels-last ``x`` (N, C, *spatial), returned channels-last.

    Statistics per (sample, channel) over the spatial axes: the mean, then the mean squared deviation from it
    (biased, as PyTorch's), summed with PyTorch's cascade summation. ``weight`` and ``bias``: (C,) or None.
    """
    n, c = x.shape[:2]
    rows = x.movedim(1, -1).reshape(n, -1, c)  # a view: (N, voxels, C)
    voxels = rows.shape[1]
    mean = rows.sum(1, keepdim=True).div_(voxels)
    out = rows - mean
    scale = out.square().sum(1, keepdim=True).div_(voxels).add_(eps).rsqrt_()
    if weight is not None:
        scale.mul_(weight)
    out.mul_(scale)
    if bias is not None:
        out.add_(bias)
    return out.view(n, *x.shape[2:], c).movedim(-1, 1)
