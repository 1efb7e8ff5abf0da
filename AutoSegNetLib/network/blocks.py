"""Plain convolution blocks: conv -> (dropout) -> norm -> nonlin, and stacks of them.

Module and attribute names follow MIC-DKFZ/dynamic-network-architectures so that nnU-Net v2
checkpoints load with the same state-dict keys (``convs.0.conv.weight``, ``convs.0.norm.weight``,
``convs.0.all_modules.0.weight``, ...).

Feature-map size (see :meth:`ConvDropoutNormReLU.feature_map_size`): a conv-norm-nonlin unit counts its
output once, ``output_channels x prod(output spatial size)``; dropout, norm and nonlin are not counted again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from AutoSegNetLib.network.layer_ops import LayerOps
from AutoSegNetLib.network.ops import chained, check_spatial_size, downsampled, per_axis


class ConvDropoutNormReLU(nn.Module):
    """One convolution followed by optional dropout, normalisation and non-linearity, built by ``ops``.

    ``(B, input_channels, *S) -> (B, output_channels, *S // stride)`` with ``S`` the spatial size
    ``(Y, X)`` or ``(Z, Y, X)``; padding ``(k - 1) // 2`` keeps the size for odd kernels. A layer whose
    operation is ``None`` in ``ops`` is left out; ``nonlin_first`` runs the non-linearity before the norm.

    The layers are attributes (``conv``, ``dropout``, ``norm``, ``nonlin``) *and* are chained in
    ``all_modules`` (an ``nn.Sequential``), exactly as in dynamic-network-architectures; the state dict
    therefore holds each parameter under both names, which nnU-Net checkpoints also do.
    """

    def __init__(
        self,
        ops: LayerOps,
        input_channels: int,
        output_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int],
        nonlin_first: bool = False,
    ) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.kernel_size = per_axis(kernel_size, ops.ndim, "kernel_size")
        self.stride = per_axis(stride, ops.ndim, "stride")

        self.conv = ops.conv(input_channels, output_channels, self.kernel_size, self.stride)
        layers: list[nn.Module] = [self.conv]
        for name, layer in (("dropout", ops.dropout()), ("norm", ops.norm(output_channels)), ("nonlin", ops.nonlin())):
            if layer is not None:
                setattr(self, name, layer)
                layers.append(layer)
        if nonlin_first and ops.norm_op is not None and ops.nonlin_op is not None:
            layers[-1], layers[-2] = layers[-2], layers[-1]
        self.all_modules = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *S // stride)``."""
        return self.all_modules(x)

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """Elements of the conv output for batch size 1: ``output_channels x prod(input_size // stride)``."""
        check_spatial_size(input_size, self.stride)
        return self.output_channels * math.prod(downsampled(input_size, self.stride))


def stack_units(
    n_units: int,
    count_name: str,
    input_channels: int,
    output_channels: int | Sequence[int],
    initial_stride: int | Sequence[int],
    make_unit: Callable[[int, int, int | Sequence[int]], nn.Module],
) -> nn.Sequential:
    """``n_units`` units ``make_unit(in_channels, out_channels, stride)`` in a row: the first gets
    ``input_channels`` and ``initial_stride``, each next one the previous one's output and stride 1.

    ``output_channels`` is one count for all units or one per unit; ``count_name`` names ``n_units`` in errors.
    """
    if n_units < 1:
        raise ValueError(f"A stack needs at least one unit; got {count_name}={n_units}.")
    channels = [output_channels] * n_units if isinstance(output_channels, int) else list(output_channels)
    if len(channels) != n_units:
        raise ValueError(f"output_channels {channels} must have {count_name}={n_units} entries.")
    strides = [initial_stride] + [1] * (n_units - 1)
    in_out = chained(input_channels, channels)
    return nn.Sequential(*(make_unit(c_in, c_out, stride) for (c_in, c_out), stride in zip(in_out, strides)))


def stack_feature_map_size(units: nn.Sequential, initial_stride: list[int], input_size: Sequence[int]) -> int:
    """Sum of the units' ``feature_map_size`` (batch size 1): the first unit at ``input_size``, the others
    after its ``initial_stride``."""
    check_spatial_size(input_size, initial_stride)
    size = downsampled(input_size, initial_stride)
    return units[0].feature_map_size(input_size) + sum(unit.feature_map_size(size) for unit in units[1:])


class StackedConvBlocks(nn.Module):
    """``num_convs`` :class:`ConvDropoutNormReLU` units in ``convs``; only the first one is strided.

    ``(B, input_channels, *S) -> (B, output_channels, *S // initial_stride)``.
    """

    def __init__(self, num_convs: int, ops: LayerOps, input_channels: int, output_channels: int | Sequence[int],
                 kernel_size: int | Sequence[int], initial_stride: int | Sequence[int],
                 nonlin_first: bool = False) -> None:
        super().__init__()
        self.convs = stack_units(
            num_convs, "num_convs", input_channels, output_channels, initial_stride,
            lambda c_in, c_out, stride: ConvDropoutNormReLU(ops, c_in, c_out, kernel_size, stride, nonlin_first),
        )
        self.output_channels = self.convs[-1].output_channels
        self.initial_stride = per_axis(initial_stride, ops.ndim, "initial_stride")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *S // initial_stride)``."""
        return self.convs(x)

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """Sum of the units' conv outputs for batch size 1 (the first unit at ``input_size``, the rest after
        its stride)."""
        return stack_feature_map_size(self.convs, self.initial_stride, input_size)
