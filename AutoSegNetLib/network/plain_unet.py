"""nnU-Net's default U-Net: plain conv-norm-nonlin stages, strided convs for downsampling."""

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


class PlainConvEncoder(nn.Module):
    """``n_stages`` stages; stage ``s`` is ``Sequential(StackedConvBlocks)`` of ``n_conv_per_stage[s]``
    conv-norm-nonlin units, the first with stride ``strides[s]``.

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
        n_conv_per_stage: int | Sequence[int],
        conv_bias: bool = False,
        norm_op: type[nn.Module] | None = None,
        norm_op_kwargs: dict[str, Any] | None = None,
        dropout_op: type[nn.Module] | None = None,
        dropout_op_kwargs: dict[str, Any] | None = None,
        nonlin: type[nn.Module] | None = None,
        nonlin_kwargs: dict[str, Any] | None = None,
        return_skips: bool = False,
        nonlin_first: bool = False,
    ) -> None:
        super().__init__()
        ndim = ndim_of_conv_op(conv_op)
        features = per_stage(features_per_stage, n_stages, "features_per_stage")
        kernels = [
            per_axis(k, ndim, "kernel size") for k in per_stage(kernel_sizes, n_stages, "kernel_sizes")
        ]
        self.strides = [per_axis(s, ndim, "stride") for s in per_stage(strides, n_stages, "strides")]
        n_convs = per_stage(n_conv_per_stage, n_stages, "n_conv_per_stage")

        stages = []
        in_channels = input_channels
        for s in range(n_stages):
            stages.append(
                nn.Sequential(
                    StackedConvBlocks(
                        n_convs[s],
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
                        nonlin_first,
                    )
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
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips if self.return_skips else skips[-1]

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """Sum over stages of their conv outputs (batch size 1), each stage seeing the previous one's size."""
        check_spatial_size(input_size, self.strides[0])
        total = 0
        size = list(input_size)
        for stage, stride in zip(self.stages, self.strides):
            total += stage[0].feature_map_size(size)
            size = downsampled(size, stride)
        return total


class PlainConvUNet(DynamicUNet):
    """nnU-Net v2's ``PlainConvUNet``: :class:`PlainConvEncoder` + :class:`UNetDecoder`.

    Input ``(B, input_channels, *S)``, ``S = (Y, X)`` or ``(Z, Y, X)``; output ``(B, num_classes, *S)``
    logits, or with ``deep_supervision`` a list of ``n_stages - 1`` logits, highest resolution first.
    ``norm_op``/``nonlin``/``dropout_op`` of ``None`` mean "no such layer", as in
    dynamic-network-architectures; :meth:`from_spec` fills in nnU-Net's defaults.
    """

    encoder_depth_argument = "n_conv_per_stage"

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: int | Sequence[int],
        conv_op: type[nn.Module],
        kernel_sizes: int | Sequence[int | Sequence[int]],
        strides: int | Sequence[int | Sequence[int]],
        n_conv_per_stage: int | Sequence[int],
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
        nonlin_first: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = PlainConvEncoder(
            input_channels,
            n_stages,
            features_per_stage,
            conv_op,
            kernel_sizes,
            strides,
            n_conv_per_stage,
            conv_bias,
            norm_op,
            norm_op_kwargs,
            dropout_op,
            dropout_op_kwargs,
            nonlin,
            nonlin_kwargs,
            return_skips=True,
            nonlin_first=nonlin_first,
        )
        self.decoder = UNetDecoder(
            self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision, nonlin_first
        )
