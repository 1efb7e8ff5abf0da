"""nnU-Net's default U-Net: plain conv-norm-nonlin stages, strided convs for downsampling."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from AutoSegNetLib.network.base import DynamicUNet
from AutoSegNetLib.network.blocks import StackedConvBlocks
from AutoSegNetLib.network.decoder import UNetDecoder
from AutoSegNetLib.network.encoder import EncoderLayout, StagedEncoder
from AutoSegNetLib.network.layer_ops import LayerOps


class PlainConvEncoder(StagedEncoder):
    """One stage per entry of ``layout``; stage ``s`` is ``Sequential(StackedConvBlocks)`` of
    ``layout.depths[s]`` conv-norm-nonlin units built by ``ops``, the first with stride ``layout.strides[s]``.

    ``(B, input_channels, *S)`` -> list of ``(B, layout.features[s], *S_s)``, highest resolution first
    (with ``return_skips``), else only the deepest map.
    """

    def __init__(
        self,
        input_channels: int,
        layout: EncoderLayout,
        ops: LayerOps,
        return_skips: bool = False,
        nonlin_first: bool = False,
    ) -> None:
        super().__init__(layout, ops, return_skips)
        self.stages = nn.Sequential(
            *(
                nn.Sequential(StackedConvBlocks(depth, ops, c_in, c_out, kernel, stride, nonlin_first))
                for c_in, c_out, depth, kernel, stride in layout.stages(input_channels)
            )
        )

    def stage_feature_map_size(self, stage: nn.Module, input_size: Sequence[int]) -> int:
        """The conv outputs of the stage's :class:`StackedConvBlocks` (batch size 1)."""
        return stage[0].feature_map_size(input_size)


class PlainConvUNet(DynamicUNet):
    """nnU-Net v2's ``PlainConvUNet``: :class:`PlainConvEncoder` + :class:`UNetDecoder`.

    Input ``(B, input_channels, *S)``, ``S = (Y, X)`` or ``(Z, Y, X)``; output ``(B, num_classes, *S)``
    logits, or with ``deep_supervision`` a list of ``n_stages - 1`` logits, highest resolution first.
    ``layout.depths`` are conv units per encoder stage. ``ops`` builds every layer (``None`` operations in it
    mean "no such layer", as in dynamic-network-architectures); :meth:`from_spec` uses
    :meth:`LayerOps.nnunet_defaults`.
    """

    def __init__(
        self,
        input_channels: int,
        layout: EncoderLayout,
        ops: LayerOps,
        num_classes: int,
        n_conv_per_stage_decoder: int | Sequence[int],
        deep_supervision: bool = False,
        nonlin_first: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = PlainConvEncoder(input_channels, layout, ops, return_skips=True, nonlin_first=nonlin_first)
        self.decoder = UNetDecoder(
            self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision, nonlin_first
        )
