"""The U-Net decoder shared by the plain and the residual-encoder U-Nets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from AutoSegNetLib.network.blocks import StackedConvBlocks
from AutoSegNetLib.network.ops import check_spatial_size, downsampled


class UNetDecoder(nn.Module):
    """Upsample, concatenate the skip, convolve; one 1x1 segmentation layer per decoder stage.

    Built from an encoder that exposes ``output_channels`` (features per stage), ``strides``,
    ``kernel_sizes`` and ``ops`` (the :class:`~AutoSegNetLib.network.layer_ops.LayerOps` its layers were
    built with; the decoder's layers use the same). Decoder stage ``s`` (0 = deepest) holds:

    - ``transpconvs[s]``: transposed conv, kernel = stride = the encoder stride it undoes, from encoder
      stage ``-(s+1)``'s channels to stage ``-(s+2)``'s;
    - ``stages[s]``: ``n_conv_per_stage[s]`` conv-norm-nonlin units on ``cat(upsampled, skip)``
      (``2 x`` the skip's channels), with the matching encoder stage's kernel size;
    - ``seg_layers[s]``: 1x1 conv with bias to ``num_classes`` logits.

    ``deep_supervision`` is a plain attribute: inference sets it to ``False`` after construction. The
    encoder is registered as ``self.encoder`` (so its parameters also appear under ``decoder.encoder.*`` in
    the state dict), exactly as in dynamic-network-architectures, to keep nnU-Net checkpoints loadable
    with ``strict=True``; ``parameters()`` lists each parameter once.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        n_conv_per_stage: int | Sequence[int],
        deep_supervision: bool,
        nonlin_first: bool = False,
    ) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision
        self.encoder = encoder
        self.num_classes = num_classes
        n_convs = _decoder_depths(n_conv_per_stage, len(encoder.output_channels))
        ops = encoder.ops
        stages, transpconvs, seg_layers = [], [], []
        for s in range(1, len(encoder.output_channels)):
            features_below = encoder.output_channels[-s]
            features_skip = encoder.output_channels[-(s + 1)]
            transpconvs.append(ops.transposed_conv(features_below, features_skip, encoder.strides[-s]))
            kernel = encoder.kernel_sizes[-(s + 1)]
            stages.append(
                StackedConvBlocks(n_convs[s - 1], ops, 2 * features_skip, features_skip, kernel, 1, nonlin_first)
            )
            seg_layers.append(ops.conv(features_skip, num_classes, 1, 1, bias=True))
        self.stages = nn.ModuleList(stages)
        self.transpconvs = nn.ModuleList(transpconvs)
        self.seg_layers = nn.ModuleList(seg_layers)

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """Encoder outputs, highest resolution first, to logits.

        Returns ``(B, num_classes, *S)`` at the input resolution, or with deep supervision a list with
        one ``(B, num_classes, *S_s)`` per decoder stage, highest resolution first (``n_stages - 1`` items).
        """
        x = skips[-1]
        seg_outputs = []
        last = len(self.stages) - 1
        for s, (transpconv, stage) in enumerate(zip(self.transpconvs, self.stages)):
            x = transpconv(x)
            x = torch.cat((x, skips[-(s + 2)]), 1)
            x = stage(x)
            if self.deep_supervision or s == last:
                seg_outputs.append(self.seg_layers[s](x))
        seg_outputs.reverse()
        return seg_outputs if self.deep_supervision else seg_outputs[0]

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """Elements (batch size 1) produced by the decoder for a network input of ``input_size``.

        Per decoder stage, at its skip's resolution: the conv units' outputs, the transposed conv's
        output (skip channels), and the seg layer's ``num_classes`` maps when it runs (every stage with
        deep supervision, else only the last). The concatenation is not counted, as in
        dynamic-network-architectures, whose counts nnU-Net's memory reference values were calibrated on.
        """
        strides = self.encoder.strides
        check_spatial_size(input_size, strides[0])
        skip_sizes = []
        size = list(input_size)
        for stride in strides[:-1]:
            size = downsampled(size, stride)
            skip_sizes.append(size)
        total = 0
        last = len(self.stages) - 1
        for s, stage in enumerate(self.stages):
            skip_size = skip_sizes[-(s + 1)]
            voxels = math.prod(skip_size)
            total += stage.feature_map_size(skip_size)
            total += self.encoder.output_channels[-(s + 2)] * voxels
            if self.deep_supervision or s == last:
                total += self.num_classes * voxels
        return total


def _decoder_depths(n_conv_per_stage: int | Sequence[int], n_stages_encoder: int) -> list[int]:
    """Conv units per decoder stage, deepest first: ``n_stages_encoder - 1`` entries."""
    if n_stages_encoder < 2:
        raise ValueError("A U-Net needs at least 2 stages to have a decoder.")
    if isinstance(n_conv_per_stage, int):
        return [n_conv_per_stage] * (n_stages_encoder - 1)
    if len(n_conv_per_stage) != n_stages_encoder - 1:
        raise ValueError(
            f"n_conv_per_stage_decoder {list(n_conv_per_stage)} must have one entry per decoder stage "
            f"(n_stages - 1 = {n_stages_encoder - 1})."
        )
    return list(n_conv_per_stage)
