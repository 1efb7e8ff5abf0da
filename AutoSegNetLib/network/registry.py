"""Registered network classes, and building a network from a :class:`NetworkSpec`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from AutoSegNetLib.errors import AutoSegNetError, did_you_mean
from AutoSegNetLib.network.base import DynamicUNet
from AutoSegNetLib.network.plain_unet import PlainConvUNet
from AutoSegNetLib.network.residual_unet import ResidualEncoderUNet
from AutoSegNetLib.network.spec import NetworkSpec

#: Network classes by the name used in plans (``NetworkSpec.name``); the names match nnU-Net's class names.
NETWORKS: dict[str, type[DynamicUNet]] = {
    "PlainConvUNet": PlainConvUNet,
    "ResidualEncoderUNet": ResidualEncoderUNet,
}


class UnknownNetworkError(AutoSegNetError, KeyError):
    """A network name that is not in :data:`NETWORKS`."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def get_network_class(name: str | type[DynamicUNet]) -> type[DynamicUNet]:
    """The registered class called ``name`` (a registered class is returned as is).

    Raises :class:`UnknownNetworkError` (a ``KeyError``) with the closest name and the known names.
    """
    if isinstance(name, type) and name in NETWORKS.values():
        return name
    if isinstance(name, str) and name in NETWORKS:
        return NETWORKS[name]
    known = sorted(NETWORKS)
    raise UnknownNetworkError(
        f"Unknown network {name!r}.{did_you_mean(str(name), known)} Known networks: {', '.join(known)}."
    )


def build_network(
    arch: NetworkSpec | Mapping[str, Any],
    input_channels: int,
    num_classes: int,
    deep_supervision: bool,
    initialize: bool = True,
) -> DynamicUNet:
    """Build the network ``arch`` describes, with nnU-Net's layer defaults (conv bias, instance norm with
    affine and eps 1e-5, LeakyReLU(0.01), no dropout) and, with ``initialize``, nnU-Net's initialisation.

    ``arch`` is a :class:`NetworkSpec` or its :meth:`~NetworkSpec.to_dict` form. Input
    ``(B, input_channels, *S)``; output logits with ``num_classes`` channels (see :class:`DynamicUNet`).
    """
    spec = arch if isinstance(arch, NetworkSpec) else NetworkSpec.from_dict(arch)
    network = get_network_class(spec.name).from_spec(spec, input_channels, num_classes, deep_supervision)
    if initialize:
        network.apply(network.initialize)
    return network
