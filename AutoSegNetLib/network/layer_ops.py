"""``LayerOps``: the layer operations of every block of a network, as one frozen object.

Blocks, encoders, the decoder and the networks take one ``LayerOps`` instead of the eight arguments
(``conv_op``, ``conv_bias``, ``norm_op(_kwargs)``, ``dropout_op(_kwargs)``, ``nonlin(_kwargs)``) that
MIC-DKFZ/dynamic-network-architectures passes to each constructor, and build their layers with its helpers
(:meth:`LayerOps.conv`, :meth:`LayerOps.norm`, ...). The layers built are the same, so the state-dict keys
are too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from torch import nn

from AutoSegNetLib.network.ops import (
    DEFAULT_NONLIN_KWARGS,
    DEFAULT_NORM_KWARGS,
    DimOps,
    ndim_of_conv_op,
    ops_for_conv,
    ops_for_dim,
    per_axis,
)

_KWARGS_FIELDS = ("norm_kwargs", "dropout_kwargs", "nonlin_kwargs")


@dataclass(frozen=True)
class LayerOps:
    """Which convolution, normalisation, dropout and non-linearity the layers of a network use.

    - ``conv_op``: ``nn.Conv2d`` for ``(B, C, Y, X)`` tensors or ``nn.Conv3d`` for ``(B, C, Z, Y, X)`` (or a
      subclass); it also fixes the transposed conv and the pooling of that dimensionality.
    - ``conv_bias``: whether convs and transposed convs have a bias (1x1 residual skip projections never
      have one, segmentation layers always do; their builders say so).
    - ``norm_op``, ``dropout_op``, ``nonlin_op``: layer classes, ``None`` for "no such layer", built with
      their ``*_kwargs`` (the norm gets the channel count first).

    The kwargs are kept as read-only copies, so one object can be shared by every block of a network.
    :meth:`nnunet_defaults` gives nnU-Net's layers.
    """

    conv_op: type[nn.Module]
    conv_bias: bool = False
    norm_op: type[nn.Module] | None = None
    norm_kwargs: Mapping[str, Any] = field(default_factory=dict)
    dropout_op: type[nn.Module] | None = None
    dropout_kwargs: Mapping[str, Any] = field(default_factory=dict)
    nonlin_op: type[nn.Module] | None = None
    nonlin_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ndim_of_conv_op(self.conv_op)  # a conv_op that is neither 2D nor 3D fails here, not in some block
        for name in _KWARGS_FIELDS:
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name) or {})))

    def __reduce__(self) -> tuple[type[LayerOps], tuple[Any, ...]]:
        """Pickle and deep-copy through the constructor (read-only mappings cannot be pickled themselves)."""
        values = (getattr(self, f.name) for f in fields(self))
        return type(self), tuple(dict(v) if isinstance(v, MappingProxyType) else v for v in values)

    @classmethod
    def nnunet_defaults(cls, ndim: int) -> LayerOps:
        """nnU-Net's layers for ``ndim`` (2 or 3): conv with bias, instance norm (affine, eps 1e-5),
        LeakyReLU(0.01) in place, no dropout."""
        dim = ops_for_dim(ndim)
        return cls(
            conv_op=dim.conv,
            conv_bias=True,
            norm_op=dim.norm,
            norm_kwargs=DEFAULT_NORM_KWARGS,
            nonlin_op=nn.LeakyReLU,
            nonlin_kwargs=DEFAULT_NONLIN_KWARGS,
        )

    @property
    def ndim(self) -> int:
        """Number of spatial axes: 2 for ``(B, C, Y, X)``, 3 for ``(B, C, Z, Y, X)``."""
        return ndim_of_conv_op(self.conv_op)

    @property
    def dim_ops(self) -> DimOps:
        """The operation classes of this dimensionality (transposed conv, pooling, ...)."""
        return ops_for_conv(self.conv_op)

    def only_conv_and_norm(self, conv_bias: bool | None = None) -> LayerOps:
        """The same conv and norm without dropout and non-linearity (a residual block's second unit, its skip
        projection); ``conv_bias`` replaces :attr:`conv_bias` when given."""
        bias = self.conv_bias if conv_bias is None else conv_bias
        return replace(self, conv_bias=bias, dropout_op=None, nonlin_op=None)

    def conv(
        self,
        input_channels: int,
        output_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int],
        bias: bool | None = None,
    ) -> nn.Module:
        """``conv_op`` with padding ``(k - 1) // 2`` (the size is kept for odd kernels);
        ``(B, input_channels, *S) -> (B, output_channels, *S // stride)``. ``bias`` overrides :attr:`conv_bias`."""
        kernel = per_axis(kernel_size, self.ndim, "kernel_size")
        return self.conv_op(
            input_channels,
            output_channels,
            kernel,
            per_axis(stride, self.ndim, "stride"),
            padding=[(k - 1) // 2 for k in kernel],
            dilation=1,
            bias=self.conv_bias if bias is None else bias,
        )

    def transposed_conv(self, input_channels: int, output_channels: int, stride: Sequence[int]) -> nn.Module:
        """Upsampling by ``stride`` (kernel = stride, bias as :attr:`conv_bias`);
        ``(B, input_channels, *S) -> (B, output_channels, *S * stride)``."""
        return self.dim_ops.transposed_conv(input_channels, output_channels, stride, stride, bias=self.conv_bias)

    def avg_pool(self, stride: Sequence[int]) -> nn.Module:
        """Average pooling with kernel = stride: ``(B, C, *S) -> (B, C, *S // stride)``."""
        return self.dim_ops.avg_pool(stride, stride)

    def norm(self, channels: int) -> nn.Module | None:
        """``norm_op`` over ``channels`` feature maps, or ``None`` without a norm."""
        return None if self.norm_op is None else self.norm_op(channels, **self.norm_kwargs)

    def dropout(self) -> nn.Module | None:
        """``dropout_op``, or ``None`` without dropout."""
        return None if self.dropout_op is None else self.dropout_op(**self.dropout_kwargs)

    def nonlin(self) -> nn.Module | None:
        """``nonlin_op``, or ``None`` without a non-linearity."""
        return None if self.nonlin_op is None else self.nonlin_op(**self.nonlin_kwargs)
