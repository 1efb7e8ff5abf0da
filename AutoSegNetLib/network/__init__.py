"""Dynamic U-Nets (nnU-Net v2's ``PlainConvUNet`` and ``ResidualEncoderUNet``) for 2D and 3D patches.

Blocks take their layer operations as one frozen :class:`LayerOps` (conv, norm, dropout, non-linearity and
their settings), so one code path builds 2D and 3D networks; they report their own feature-map size for the
planner's memory estimate (``feature_map_size``) and use the module names of
MIC-DKFZ/dynamic-network-architectures, so nnU-Net v2 checkpoints share state-dict keys.

Entry point: :func:`build_network` from a :class:`NetworkSpec`.
"""

from AutoSegNetLib.network.base import DynamicUNet
from AutoSegNetLib.network.blocks import ConvDropoutNormReLU, StackedConvBlocks
from AutoSegNetLib.network.decoder import UNetDecoder
from AutoSegNetLib.network.encoder import EncoderLayout, StagedEncoder
from AutoSegNetLib.network.layer_ops import LayerOps
from AutoSegNetLib.network.ops import (
    DEFAULT_NONLIN_KWARGS,
    DEFAULT_NORM_KWARGS,
    DimOps,
    ndim_of_conv_op,
    ops_for_dim,
)
from AutoSegNetLib.network.plain_unet import PlainConvEncoder, PlainConvUNet
from AutoSegNetLib.network.registry import NETWORKS, UnknownNetworkError, build_network, get_network_class
from AutoSegNetLib.network.residual_blocks import BasicBlockD, ResidualBlockType, StackedResidualBlocks
from AutoSegNetLib.network.residual_unet import ResidualEncoder, ResidualEncoderUNet
from AutoSegNetLib.network.spec import NetworkSpec, NetworkSpecError
from AutoSegNetLib.network.weight_init import init_last_norm_before_add_to_zero, init_weights_he

__all__ = [
    "DEFAULT_NONLIN_KWARGS",
    "DEFAULT_NORM_KWARGS",
    "NETWORKS",
    "BasicBlockD",
    "ConvDropoutNormReLU",
    "DimOps",
    "DynamicUNet",
    "EncoderLayout",
    "LayerOps",
    "NetworkSpec",
    "NetworkSpecError",
    "PlainConvEncoder",
    "PlainConvUNet",
    "ResidualBlockType",
    "ResidualEncoder",
    "ResidualEncoderUNet",
    "StackedConvBlocks",
    "StackedResidualBlocks",
    "StagedEncoder",
    "UNetDecoder",
    "UnknownNetworkError",
    "build_network",
    "get_network_class",
    "init_last_norm_before_add_to_zero",
    "init_weights_he",
    "ndim_of_conv_op",
    "ops_for_dim",
]
