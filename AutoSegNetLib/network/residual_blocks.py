"""Residual blocks of nnU-Net's residual-encoder U-Nets (ResEnc presets).

Names follow MIC-DKFZ/dynamic-network-architectures (``BasicBlockD``, ``StackedResidualBlocks``;
attributes ``conv1``, ``conv2``, ``nonlin2``, ``skip``, ``blocks``) so checkpoints share state-dict keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from AutoSegNetLib.network.blocks import ConvDropoutNormReLU
from AutoSegNetLib.network.ops import check_spatial_size, downsampled, ndim_of_conv_op, ops_for_conv, per_axis


class BasicBlockD(nn.Module):
    """Two convolutions with a residual connection, "ResNet-D" style.

    ``(B, input_channels, *S) -> (B, output_channels, *S // stride)``.

    Main path: ``conv1`` (conv-dropout-norm-nonlin, strided) then ``conv2`` (conv-norm, no nonlin); the sum
    with the skip path goes through ``nonlin2``. Skip path: identity, or, when the stride or the channel
    count changes, ``skip = Sequential([AvgPool(stride)], [ConvDropoutNormReLU(1x1 conv, no bias, norm)])``
    -- the pooling only when strided, the projection only when the channels change (the "D" variant pools
    instead of striding the 1x1 conv).
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
    ) -> None:
        super().__init__()
        ndim = ndim_of_conv_op(conv_op)
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.stride = per_axis(stride, ndim, "stride")
        kernel = per_axis(kernel_size, ndim, "kernel_size")

        self.conv1 = ConvDropoutNormReLU(
            conv_op,
            input_channels,
            output_channels,
            kernel,
            self.stride,
            conv_bias,
            norm_op,
            norm_op_kwargs,
            dropout_op,
            dropout_op_kwargs,
            nonlin,
            nonlin_kwargs,
        )
        self.conv2 = ConvDropoutNormReLU(
            conv_op, output_channels, output_channels, kernel, 1, conv_bias, norm_op, norm_op_kwargs
        )
        self.nonlin2 = nonlin(**(nonlin_kwargs or {})) if nonlin is not None else nn.Identity()

        has_stride = any(s != 1 for s in self.stride)
        needs_projection = input_channels != output_channels
        self.skip: nn.Module
        if has_stride or needs_projection:
            skip_ops: list[nn.Module] = []
            if has_stride:
                skip_ops.append(ops_for_conv(conv_op).avg_pool(self.stride, self.stride))
            if needs_projection:
                skip_ops.append(
                    ConvDropoutNormReLU(
                        conv_op, input_channels, output_channels, 1, 1, False, norm_op, norm_op_kwargs
                    )
                )
            self.skip = nn.Sequential(*skip_ops)
        else:
            self.skip = nn.Identity()

    @property
    def has_skip_path_ops(self) -> bool:
        """Whether the skip path pools and/or projects (a Sequential) instead of being the identity."""
        return isinstance(self.skip, nn.Sequential)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *S // stride)``."""
        residual = self.skip(x)
        out = self.conv2(self.conv1(x))
        out += residual
        return self.nonlin2(out)

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """Elements for batch size 1: ``output_channels x prod(input_size // stride)`` for ``conv1``, for
        ``conv2`` and, when the skip path is not the identity, once more for its output (as
        dynamic-network-architectures counts it, also when the skip path only pools)."""
        check_spatial_size(input_size, self.stride)
        per_map = self.output_channels * math.prod(downsampled(input_size, self.stride))
        return per_map * (3 if self.has_skip_path_ops else 2)


class StackedResidualBlocks(nn.Module):
    """``n_blocks`` :class:`BasicBlockD` in ``blocks``; only the first is strided and changes the channels.

    ``(B, input_channels, *S) -> (B, output_channels, *S // initial_stride)``.
    """

    def __init__(
        self,
        n_blocks: int,
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
    ) -> None:
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"A residual stage needs at least one block; got n_blocks={n_blocks}.")
        channels = [output_channels] * n_blocks if isinstance(output_channels, int) else list(output_channels)
        if len(channels) != n_blocks:
            raise ValueError(f"output_channels {channels} must have n_blocks={n_blocks} entries.")
        in_channels = [input_channels, *channels[:-1]]
        self.blocks = nn.Sequential(
            *(
                BasicBlockD(
                    conv_op,
                    c_in,
                    c_out,
                    kernel_size,
                    initial_stride if i == 0 else 1,
                    conv_bias,
                    norm_op,
                    norm_op_kwargs,
                    dropout_op,
                    dropout_op_kwargs,
                    nonlin,
                    nonlin_kwargs,
                )
                for i, (c_in, c_out) in enumerate(zip(in_channels, channels))
            )
        )
        self.output_channels = channels[-1]
        self.initial_stride = per_axis(initial_stride, ndim_of_conv_op(conv_op), "initial_stride")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *S // initial_stride)``."""
        return self.blocks(x)

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """Sum of the blocks' :meth:`BasicBlockD.feature_map_size` (the first at ``input_size``)."""
        check_spatial_size(input_size, self.initial_stride)
        total = self.blocks[0].feature_map_size(input_size)
        size = downsampled(input_size, self.initial_stride)
        return total + sum(block.feature_map_size(size) for block in self.blocks[1:])
