"""Weight initialisation as in nnU-Net v2 (``InitWeights_He`` and ``init_last_bn_before_add_to_0``)."""

from __future__ import annotations

from torch import nn

from AutoSegNetLib.network.residual_blocks import BasicBlockD

_CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def init_weights_he(module: nn.Module, neg_slope: float = 1e-2) -> None:
    """He (Kaiming) normal weights with LeakyReLU slope ``neg_slope`` and zero bias, for (transposed) convs.

    Use with ``network.apply(init_weights_he)``; other modules are left alone (instance norms keep
    weight 1, bias 0).
    """
    if isinstance(module, _CONVS):
        nn.init.kaiming_normal_(module.weight, a=neg_slope)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_last_norm_before_add_to_zero(module: nn.Module) -> None:
    """Zero the scale and shift of the norm right before the residual sum of a :class:`BasicBlockD`.

    Each residual block then starts as (nonlin of) its skip path, as nnU-Net does for its ResEnc
    U-Nets (``init_last_bn_before_add_to_0``). Use with ``network.apply(...)``.
    """
    if isinstance(module, BasicBlockD):
        norm = getattr(module.conv2, "norm", None)
        if norm is not None and getattr(norm, "weight", None) is not None:
            nn.init.zeros_(norm.weight)
            nn.init.zeros_(norm.bias)
