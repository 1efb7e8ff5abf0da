"""nnU-Net's residual-encoder U-Net (ResEnc M/L/XL presets): a stem, then stages of residual blocks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from AutoSegNetLib.network.base import DynamicUNet
from AutoSegNetLib.network.blocks import StackedConvBlocks
from AutoSegNetLib.network.decoder import UNetDecoder
from AutoSegNetLib.network.encoder import EncoderLayout, StagedEncoder
from AutoSegNetLib.network.layer_ops import LayerOps
from AutoSegNetLib.network.residual_blocks import BasicBlockD, ResidualBlockType, StackedResidualBlocks
from AutoSegNetLib.network.weight_init import init_last_norm_before_add_to_zero, init_weights_he


class ResidualEncoder(StagedEncoder):
    """Residual encoder: ``stem`` then ``stages``.

    ``stem``: one conv-norm-nonlin unit, stride 1, ``stem_channels`` (default ``layout.features[0]``);
    ``stages``: stage ``s`` is a :class:`StackedResidualBlocks` of ``layout.depths[s]`` blocks of type
    ``block`` (:class:`BasicBlockD` by default), the first with stride ``layout.strides[s]``.

    ``(B, input_channels, *S)`` -> list of ``(B, layout.features[s], *S_s)``, highest resolution first
    (with ``return_skips``), else only the deepest map.
    """

    def __init__(
        self,
        input_channels: int,
        layout: EncoderLayout,
        ops: LayerOps,
        return_skips: bool = False,
        stem_channels: int | None = None,
        block: ResidualBlockType = BasicBlockD,
    ) -> None:
        super().__init__(layout, ops, return_skips)
        stem_channels = layout.features[0] if stem_channels is None else stem_channels
        self.stem = StackedConvBlocks(1, ops, input_channels, stem_channels, layout.kernel_sizes[0], 1)
        self.stages = nn.Sequential(
            *(
                StackedResidualBlocks(depth, ops, c_in, c_out, kernel, stride, block)
                for c_in, c_out, depth, kernel, stride in layout.stages(stem_channels)
            )
        )


class ResidualEncoderUNet(DynamicUNet):
    """nnU-Net v2's ``ResidualEncoderUNet``: :class:`ResidualEncoder` + the plain :class:`UNetDecoder`.

    Same input/output contract as :class:`~AutoSegNetLib.network.plain_unet.PlainConvUNet`;
    ``layout.depths`` are residual blocks per encoder stage (nnU-Net ResEnc: ``(1, 3, 4, 6, 6, 6, ...)``),
    of type ``block``. :meth:`initialize` also zeroes the last norm of every residual block, as nnU-Net does.
    """

    def __init__(
        self,
        input_channels: int,
        layout: EncoderLayout,
        ops: LayerOps,
        num_classes: int,
        n_conv_per_stage_decoder: int | Sequence[int],
        deep_supervision: bool = False,
        stem_channels: int | None = None,
        block: ResidualBlockType = BasicBlockD,
    ) -> None:
        super().__init__()
        self.encoder = ResidualEncoder(
            input_channels, layout, ops, return_skips=True, stem_channels=stem_channels, block=block
        )
        self.decoder = UNetDecoder(self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """He init of convs, then zero scale/shift of each residual block's last norm (before the sum)."""
        init_weights_he(module, 1e-2)
        init_last_norm_before_add_to_zero(module)
