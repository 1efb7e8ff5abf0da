"""What the plain and the residual encoders share: per-stage settings, the forward pass, the feature-map size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from AutoSegNetLib.network.layer_ops import LayerOps
from AutoSegNetLib.network.ops import chained, check_spatial_size, downsampled, per_axis


@dataclass(frozen=True)
class EncoderLayout:
    """Per-stage settings of an encoder, one entry per stage, highest resolution first.

    - ``features``: output channels of each stage; ``n_stages = len(features)``.
    - ``kernel_sizes``: per stage, one kernel size per spatial axis, ``(Y, X)`` or ``(Z, Y, X)``.
    - ``strides``: per stage, one stride per spatial axis, applied by the stage's first unit.
    - ``depths``: conv units (plain encoder) or residual blocks (residual encoder) per stage.

    Any sequences are accepted and kept as tuples of ints; a wrong count of stages or axes raises
    ``ValueError``. A :class:`~AutoSegNetLib.network.spec.NetworkSpec` gives ``features_per_stage``,
    ``kernel_sizes``, ``strides`` and ``n_conv_per_stage`` in this order.
    """

    features: Sequence[int]
    kernel_sizes: Sequence[Sequence[int]]
    strides: Sequence[Sequence[int]]
    depths: Sequence[int]

    def __post_init__(self) -> None:
        n_stages = len(self.features)
        if n_stages == 0:
            raise ValueError("An encoder needs at least one stage; features is empty.")
        for name in ("kernel_sizes", "strides", "depths"):
            if len(getattr(self, name)) != n_stages:
                raise ValueError(
                    f"{name} {list(getattr(self, name))} must have one entry per stage (n_stages={n_stages})."
                )
        ndim = len(self.kernel_sizes[0])
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        for name, what in (("kernel_sizes", "kernel size"), ("strides", "stride")):
            object.__setattr__(self, name, tuple(tuple(per_axis(v, ndim, what)) for v in getattr(self, name)))

    @property
    def ndim(self) -> int:
        """Number of spatial axes the kernel sizes and strides are given for."""
        return len(self.kernel_sizes[0])

    def stages(self, input_channels: int) -> list[tuple[int, int, int, tuple[int, ...], tuple[int, ...]]]:
        """``(in_channels, out_channels, depth, kernel_size, stride)`` of each stage, highest resolution first,
        when the first stage gets ``input_channels`` (each next one the previous one's output)."""
        channels = chained(input_channels, self.features)
        return [(*c, d, k, s) for c, d, k, s in zip(channels, self.depths, self.kernel_sizes, self.strides)]


class StagedEncoder(nn.Module):
    """Base of the encoders: an optional ``stem``, then ``stages`` (an ``nn.Sequential``), stage ``s``
    strided by ``strides[s]``.

    ``(B, input_channels, *S)`` -> list of ``(B, output_channels[s], *S_s)``, highest resolution first
    (with ``return_skips``), else only the deepest map. Keeps what :class:`UNetDecoder` is built from:
    ``ops``, ``output_channels``, ``kernel_sizes`` and ``strides``.
    """

    stages: nn.Sequential

    def __init__(self, layout: EncoderLayout, ops: LayerOps, return_skips: bool) -> None:
        super().__init__()
        if layout.ndim != ops.ndim:
            raise ValueError(
                f"The encoder layout has {layout.ndim} spatial axes but ops.conv_op {ops.conv_op.__name__} is "
                f"{ops.ndim}D; give kernel sizes and strides with one entry per axis of the conv."
            )
        self.ops = ops
        self.output_channels = list(layout.features)
        self.kernel_sizes = [list(k) for k in layout.kernel_sizes]
        self.strides = [list(s) for s in layout.strides]
        self.return_skips = return_skips
        self.stem: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """``(B, C_in, *S)`` -> one map per stage (highest resolution first) or only the deepest."""
        if self.stem is not None:
            x = self.stem(x)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips if self.return_skips else skips[-1]

    def stage_feature_map_size(self, stage: nn.Module, input_size: Sequence[int]) -> int:
        """Feature-map elements (batch size 1) of one stage for an input of ``input_size``."""
        return stage.feature_map_size(input_size)

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """The stem's conv outputs, if any, plus every stage's (batch size 1), each stage seeing the previous
        one's size."""
        check_spatial_size(input_size, self.strides[0])
        total = 0 if self.stem is None else self.stem.feature_map_size(input_size)
        size = list(input_size)
        for stage, stride in zip(self.stages, self.strides):
            total += self.stage_feature_map_size(stage, size)
            size = downsampled(size, stride)
        return total
