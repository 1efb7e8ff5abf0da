"""Residual blocks of nnU-Net's residual-encoder U-Nets (ResEnc presets).

Names follow MIC-DKFZ/dynamic-network-architectures (``BasicBlockD``, ``StackedResidualBlocks``;
attributes ``conv1``, ``conv2``, ``nonlin2``, ``skip``, ``blocks``) so checkpoints share state-dict keys.
:class:`StackedResidualBlocks` takes the block type as a parameter (``block``, :class:`BasicBlockD` by
default), as dynamic-network-architectures does to choose between its basic and bottleneck blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from AutoSegNetLib.network.blocks import ConvDropoutNormReLU, stack_feature_map_size, stack_units
from AutoSegNetLib.network.layer_ops import LayerOps
from AutoSegNetLib.network.ops import check_spatial_size, downsampled, per_axis

#: A residual block type: called as ``block(ops, input_channels, output_channels, kernel_size, stride)``, it
#: returns a module ``(B, input_channels, *S) -> (B, output_channels, *S // stride)`` with an
#: ``output_channels`` attribute and a ``feature_map_size(input_size)`` method, like :class:`BasicBlockD`.
ResidualBlockType = Callable[[LayerOps, int, int, int | Sequence[int], int | Sequence[int]], nn.Module]


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
        ops: LayerOps,
        input_channels: int,
        output_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int],
    ) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.stride = per_axis(stride, ops.ndim, "stride")
        kernel = per_axis(kernel_size, ops.ndim, "kernel_size")

        self.conv1 = ConvDropoutNormReLU(ops, input_channels, output_channels, kernel, self.stride)
        self.conv2 = ConvDropoutNormReLU(ops.only_conv_and_norm(), output_channels, output_channels, kernel, 1)
        nonlin = ops.nonlin()
        self.nonlin2 = nn.Identity() if nonlin is None else nonlin
        self.skip = self._skip_path(ops, input_channels, output_channels, self.stride)

    @staticmethod
    def _skip_path(ops: LayerOps, input_channels: int, output_channels: int, stride: list[int]) -> nn.Module:
        """Identity, or ``Sequential([AvgPool(stride)], [1x1 conv without bias + norm])``."""
        has_stride = any(s != 1 for s in stride)
        needs_projection = input_channels != output_channels
        if not (has_stride or needs_projection):
            return nn.Identity()
        skip_ops: list[nn.Module] = []
        if has_stride:
            skip_ops.append(ops.avg_pool(stride))
        if needs_projection:
            projection_ops = ops.only_conv_and_norm(conv_bias=False)
            skip_ops.append(ConvDropoutNormReLU(projection_ops, input_channels, output_channels, 1, 1))
        return nn.Sequential(*skip_ops)

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
    """``n_blocks`` residual blocks of type ``block`` in ``blocks``; only the first is strided and changes
    the channels. Shapes as :class:`~AutoSegNetLib.network.blocks.StackedConvBlocks`."""

    def __init__(self, n_blocks: int, ops: LayerOps, input_channels: int, output_channels: int | Sequence[int],
                 kernel_size: int | Sequence[int], initial_stride: int | Sequence[int],
                 block: ResidualBlockType = BasicBlockD) -> None:
        super().__init__()
        self.blocks = stack_units(
            n_blocks, "n_blocks", input_channels, output_channels, initial_stride,
            lambda c_in, c_out, stride: block(ops, c_in, c_out, kernel_size, stride),
        )
        self.output_channels = self.blocks[-1].output_channels
        self.initial_stride = per_axis(initial_stride, ops.ndim, "initial_stride")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *S // initial_stride)``."""
        return self.blocks(x)

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """Sum of the blocks' ``feature_map_size`` (the first at ``input_size``, the rest after its stride)."""
        return stack_feature_map_size(self.blocks, self.initial_stride, input_size)
