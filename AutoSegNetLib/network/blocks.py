"""Plain convolution blocks: conv -> (dropout) -> norm -> nonlin, and stacks of them.

Module and attribute names follow MIC-DKFZ/dynamic-network-architectures so that nnU-Net v2
checkpoints load with the same state-dict keys (``convs.0.conv.weight``, ``convs.0.norm.weight``,
``convs.0.all_modules.0.weight``, ...).

Feature-map size (see :meth:`ConvDropoutNormReLU.feature_map_size`): a conv-norm-nonlin unit counts its
output once, ``output_channels x prod(output spatial size)``; dropout, norm and nonlin are not counted again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from AutoSegNetLib.network.ops import check_spatial_size, downsampled, ndim_of_conv_op, per_axis


class ConvDropoutNormReLU(nn.Module):
    """One convolution followed by optional dropout, normalisation and non-linearity.

    ``(B, input_channels, *S) -> (B, output_channels, *S // stride)`` with ``S`` the spatial size
    ``(Y, X)`` or ``(Z, Y, X)``; padding ``(k - 1) // 2`` keeps the size for odd kernels.

    The layers are attributes (``conv``, ``dropout``, ``norm``, ``nonlin``) *and* are chained in
    ``all_modules`` (an ``nn.Sequential``), exactly as in dynamic-network-architectures; the state dict
    therefore holds each parameter under both names, which nnU-Net checkpoints also do.
    """

    def __init__(
        self,
        conv_op: type[nn.Module],
        input_channels: int,
        output_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int],
        conv_bias: bool = False,
        norm_op: type[nn.Module] | None = None,
        norm_op_kwargs: dict[str, Any] | None = None,
        dropout_op: type[nn.Module] | None = None,
        dropout_op_kwargs: dict[str, Any] | None = None,
        nonlin: type[nn.Module] | None = None,
        nonlin_kwargs: dict[str, Any] | None = None,
        nonlin_first: bool = False,
    ) -> None:
        super().__init__()
        ndim = ndim_of_conv_op(conv_op)
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.kernel_size = per_axis(kernel_size, ndim, "kernel_size")
        self.stride = per_axis(stride, ndim, "stride")

        ops: list[nn.Module] = []
        self.conv = conv_op(
            input_channels,
            output_channels,
            self.kernel_size,
            self.stride,
            padding=[(k - 1) // 2 for k in self.kernel_size],
            dilation=1,
            bias=conv_bias,
        )
        ops.append(self.conv)
        if dropout_op is not None:
            self.dropout = dropout_op(**(dropout_op_kwargs or {}))
            ops.append(self.dropout)
        if norm_op is not None:
            self.norm = norm_op(output_channels, **(norm_op_kwargs or {}))
            ops.append(self.norm)
        if nonlin is not None:
            self.nonlin = nonlin(**(nonlin_kwargs or {}))
            ops.append(self.nonlin)
        if nonlin_first and norm_op is not None and nonlin is not None:
            ops[-1], ops[-2] = ops[-2], ops[-1]
        self.all_modules = nn.Sequential(*ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *S // stride)``."""
        return self.all_modules(x)

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """Elements of the conv output for batch size 1: ``output_channels x prod(input_size // stride)``."""
        check_spatial_size(input_size, self.stride)
        return self.output_channels * math.prod(downsampled(input_size, self.stride))


class StackedConvBlocks(nn.Module):
    """``num_convs`` :class:`ConvDropoutNormReLU` units in ``convs``; only the first one is strided.

    ``(B, input_channels, *S) -> (B, output_channels, *S // initial_stride)``.
    """

    def __init__(
        self,
        num_convs: int,
        conv_op: type[nn.Module],
        input_channels: int,
        output_channels: int | Sequence[int],
        kernel_size: int | Sequence[int],
        initial_stride: int | Sequence[int],
        conv_bias: bool = False,
        norm_op: type[nn.Module] | None = None,
        norm_op_kwargs: dict[str, Any] | None = None,
        dropout_op: type[nn.Module] | None = None,
        dropout_op_kwargs: dict[str, Any] | None = None,
        nonlin: type[nn.Module] | None = None,
        nonlin_kwargs: dict[str, Any] | None = None,
        nonlin_first: bool = False,
    ) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"A conv stack needs at least one convolution; got num_convs={num_convs}.")
        channels = (
            [output_channels] * num_convs if isinstance(output_channels, int) else list(output_channels)
        )
        if len(channels) != num_convs:
            raise ValueError(f"output_channels {channels} must have num_convs={num_convs} entries.")
        common = {
            "conv_bias": conv_bias,
            "norm_op": norm_op,
            "norm_op_kwargs": norm_op_kwargs,
            "dropout_op": dropout_op,
            "dropout_op_kwargs": dropout_op_kwargs,
            "nonlin": nonlin,
            "nonlin_kwargs": nonlin_kwargs,
            "nonlin_first": nonlin_first,
        }
        in_channels = [input_channels, *channels[:-1]]
        self.convs = nn.Sequential(
            *(
                ConvDropoutNormReLU(
                    conv_op, c_in, c_out, kernel_size, initial_stride if i == 0 else 1, **common
                )
                for i, (c_in, c_out) in enumerate(zip(in_channels, channels))
            )
        )
        self.output_channels = channels[-1]
        self.initial_stride = per_axis(initial_stride, ndim_of_conv_op(conv_op), "initial_stride")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *S // initial_stride)``."""
        return self.convs(x)

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """Sum of the units' conv outputs for batch size 1 (the first unit at ``input_size``, the rest after
        its stride)."""
        check_spatial_size(input_size, self.initial_stride)
        total = self.convs[0].feature_map_size(input_size)
        size = downsampled(input_size, self.initial_stride)
        return total + sum(unit.feature_map_size(size) for unit in self.convs[1:])
