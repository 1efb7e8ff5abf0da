"""nnU-Net's residual-encoder U-Net (ResEnc M/L/XL presets): a stem, then stages of residual blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from AutoSegNetLib.network.base import DynamicUNet
from AutoSegNetLib.network.blocks import StackedConvBlocks
from AutoSegNetLib.network.decoder import UNetDecoder
from AutoSegNetLib.network.ops import (
    check_spatial_size,
    downsampled,
    keep_layer_settings,
    ndim_of_conv_op,
    per_axis,
    per_stage,
)
from AutoSegNetLib.network.residual_blocks import StackedResidualBlocks
from AutoSegNetLib.network.weight_init import init_last_norm_before_add_to_zero, init_weights_he


class ResidualEncoder(nn.Module):
    """Residual encoder: ``stem`` then ``stages``.

    ``stem``: one conv-norm-nonlin unit, stride 1, ``stem_channels`` (default ``features_per_stage[0]``);
    ``stages``: stage ``s`` is a :class:`StackedResidualBlocks` of ``n_blocks_per_stage[s]``
    :class:`BasicBlockD`, the first with stride ``strides[s]``.

    ``(B, input_channels, *S)`` -> list of ``(B, features_per_stage[s], *S_s)``, highest resolution first
    (with ``return_skips``), else only the deepest map.
    """

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: int | Sequence[int],
        conv_op: type[nn.Module],
        kernel_sizes: int | Sequence[int | Sequence[int]],
        strides: int | Sequence[int | Sequence[int]],
        n_blocks_per_stage: int | Sequence[int],
        conv_bias: bool = False,
        norm_op: type[nn.Module] | None = None,
        norm_op_kwargs: dict[str, Any] | None = None,
        dropout_op: type[nn.Module] | None = None,
        dropout_op_kwargs: dict[str, Any] | None = None,
        nonlin: type[nn.Module] | None = None,
        nonlin_kwargs: dict[str, Any] | None = None,
        return_skips: bool = False,
        stem_channels: int | None = None,
    ) -> None:
        super().__init__()
        ndim = ndim_of_conv_op(conv_op)
        features = per_stage(features_per_stage, n_stages, "features_per_stage")
        kernels = [
            per_axis(k, ndim, "kernel size") for k in per_stage(kernel_sizes, n_stages, "kernel_sizes")
        ]
        self.strides = [per_axis(s, ndim, "stride") for s in per_stage(strides, n_stages, "strides")]
        n_blocks = per_stage(n_blocks_per_stage, n_stages, "n_blocks_per_stage")

        stem_channels = features[0] if stem_channels is None else stem_channels
        self.stem = StackedConvBlocks(
            1,
            conv_op,
            input_channels,
            stem_channels,
            kernels[0],
            1,
            conv_bias,
            norm_op,
            norm_op_kwargs,
            dropout_op,
            dropout_op_kwargs,
            nonlin,
            nonlin_kwargs,
        )
        stages = []
        in_channels = stem_channels
        for s in range(n_stages):
            stages.append(
                StackedResidualBlocks(
                    n_blocks[s],
                    conv_op,
                    in_channels,
                    features[s],
                    kernels[s],
                    self.strides[s],
                    conv_bias,
                    norm_op,
                    norm_op_kwargs,
                    dropout_op,
                    dropout_op_kwargs,
                    nonlin,
                    nonlin_kwargs,
                )
            )
            in_channels = features[s]
        self.stages = nn.Sequential(*stages)
        self.output_channels = features
        self.return_skips = return_skips
        keep_layer_settings(self, conv_op, kernels, conv_bias, norm_op, norm_op_kwargs, dropout_op,
                            dropout_op_kwargs, nonlin, nonlin_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """``(B, C_in, *S)`` -> one map per stage (highest resolution first) or only the deepest."""
        x = self.stem(x)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips if self.return_skips else skips[-1]

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """The stem's conv output plus every stage's residual blocks (batch size 1)."""
        check_spatial_size(input_size, self.strides[0])
        total = self.stem.feature_map_size(input_size)
        size = list(input_size)
        for stage, stride in zip(self.stages, self.strides):
            total += stage.feature_map_size(size)
            size = downsampled(size, stride)
        return total


class ResidualEncoderUNet(DynamicUNet):
    """nnU-Net v2's ``ResidualEncoderUNet``: :class:`ResidualEncoder` + the plain :class:`UNetDecoder`.

    Same input/output contract as :class:`~AutoSegNetLib.network.plain_unet.PlainConvUNet`;
    ``n_blocks_per_stage`` residual blocks per encoder stage (nnU-Net ResEnc: ``(1, 3, 4, 6, 6, 6, ...)``).
    :meth:`initialize` also zeroes the last norm of every residual block, as nnU-Net does.
    """

    encoder_depth_argument = "n_blocks_per_stage"

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: int | Sequence[int],
        conv_op: type[nn.Module],
        kernel_sizes: int | Sequence[int | Sequence[int]],
        strides: int | Sequence[int | Sequence[int]],
        n_blocks_per_stage: int | Sequence[int],
        num_classes: int,
        n_conv_per_stage_decoder: int | Sequence[int],
        conv_bias: bool = True,
        norm_op: type[nn.Module] | None = None,
        norm_op_kwargs: dict[str, Any] | None = None,
        dropout_op: type[nn.Module] | None = None,
        dropout_op_kwargs: dict[str, Any] | None = None,
        nonlin: type[nn.Module] | None = None,
        nonlin_kwargs: dict[str, Any] | None = None,
        deep_supervision: bool = False,
        stem_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.encoder = ResidualEncoder(
            input_channels,
            n_stages,
            features_per_stage,
            conv_op,
            kernel_sizes,
            strides,
            n_blocks_per_stage,
            conv_bias,
            norm_op,
            norm_op_kwargs,
            dropout_op,
            dropout_op_kwargs,
            nonlin,
            nonlin_kwargs,
            return_skips=True,
            stem_channels=stem_channels,
        )
        self.decoder = UNetDecoder(self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """He init of convs, then zero scale/shift of each residual block's last norm (before the sum)."""
        init_weights_he(module, 1e-2)
        init_last_norm_before_add_to_zero(module)
