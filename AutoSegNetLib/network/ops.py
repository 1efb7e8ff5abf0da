"""Operations by dimensionality, so one code path builds 2D and 3D networks.

Every block in this package takes its layer operations as one
:class:`~AutoSegNetLib.network.layer_ops.LayerOps` instead of branching on the dimension;
:func:`ops_for_dim` picks the matching classes for 2D (``(B, C, Y, X)``) or 3D (``(B, C, Z, Y, X)``) tensors.
The shape helpers below (:func:`per_axis`, :func:`downsampled`, ...) are shared by the blocks and encoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

#: nnU-Net's normalisation: instance norm with learnable scale and shift.
DEFAULT_NORM_KWARGS: dict[str, Any] = {"eps": 1e-5, "affine": True}
#: nnU-Net's non-linearity: LeakyReLU(0.01), in place.
DEFAULT_NONLIN_KWARGS: dict[str, Any] = {"negative_slope": 1e-2, "inplace": True}


@dataclass(frozen=True)
class DimOps:
    """The operation classes for one dimensionality."""

    ndim: int
    conv: type[nn.Module]
    norm: type[nn.Module]
    transposed_conv: type[nn.Module]
    dropout: type[nn.Module]
    avg_pool: type[nn.Module]


_OPS = {
    2: DimOps(2, nn.Conv2d, nn.InstanceNorm2d, nn.ConvTranspose2d, nn.Dropout2d, nn.AvgPool2d),
    3: DimOps(3, nn.Conv3d, nn.InstanceNorm3d, nn.ConvTranspose3d, nn.Dropout3d, nn.AvgPool3d),
}


def ops_for_dim(ndim: int) -> DimOps:
    """Conv, instance norm, transposed conv, dropout and average pooling for ``ndim`` (2 or 3)."""
    if ndim not in _OPS:
        raise ValueError(
            f"Networks are 2D or 3D; got ndim={ndim!r}. Use 2 for (B, C, Y, X) or 3 for (B, C, Z, Y, X)."
        )
    return _OPS[ndim]


def ndim_of_conv_op(conv_op: type[nn.Module]) -> int:
    """2 for ``nn.Conv2d`` (and ``nn.ConvTranspose2d``), 3 for the 3D counterparts."""
    for ndim, ops in _OPS.items():
        if issubclass(conv_op, (ops.conv, ops.transposed_conv)):
            return ndim
    raise ValueError(f"conv_op must be nn.Conv2d or nn.Conv3d (or a subclass); got {conv_op!r}.")


def ops_for_conv(conv_op: type[nn.Module]) -> DimOps:
    """The operation set matching ``conv_op``'s dimensionality."""
    return ops_for_dim(ndim_of_conv_op(conv_op))


def per_axis(value: int | Sequence[int], ndim: int, what: str = "value") -> list[int]:
    """``value`` as one int per spatial axis: an int is repeated, a sequence must have ``ndim`` entries."""
    if isinstance(value, int):
        return [value] * ndim
    values = [int(v) for v in value]
    if len(values) != ndim:
        raise ValueError(f"{what} {list(value)} must have one entry per spatial axis ({ndim}).")
    return values


def downsampled(size: Sequence[int], stride: Sequence[int]) -> list[int]:
    """Spatial size after a stride, rounded down (the planner only plans divisible patch sizes)."""
    return [s // k for s, k in zip(size, stride)]


def check_spatial_size(input_size: Sequence[int], stride: Sequence[int]) -> None:
    """Raise if ``input_size`` does not have one entry per spatial axis of a block with ``stride``."""
    if len(input_size) != len(stride):
        raise ValueError(
            f"input_size {list(input_size)} must have one entry per spatial axis ({len(stride)}) "
            "of this block."
        )


def chained(input_channels: int, output_channels: Sequence[int]) -> list[tuple[int, int]]:
    """``(in, out)`` channels of units run one after the other: each unit takes the previous unit's output.

    ``chained(2, [4, 8])`` is ``[(2, 4), (4, 8)]``.
    """
    return list(zip([input_channels, *output_channels[:-1]], output_channels))
