"""What the plain and the residual-encoder U-Nets share: forward, deep supervision switch, sizes, specs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from AutoSegNetLib.network.decoder import UNetDecoder
from AutoSegNetLib.network.encoder import EncoderLayout, StagedEncoder
from AutoSegNetLib.network.layer_ops import LayerOps
from AutoSegNetLib.network.spec import NetworkSpec
from AutoSegNetLib.network.weight_init import init_weights_he


class DynamicUNet(nn.Module):
    """An encoder returning one skip per stage, followed by a :class:`UNetDecoder`.

    Input ``(B, input_channels, *S)`` with ``S = (Y, X)`` or ``(Z, Y, X)``, each axis divisible by the
    product of the strides along it. Output ``(B, num_classes, *S)`` logits, or with deep supervision a
    list of ``n_stages - 1`` logits, highest resolution first, the ``i``-th at ``S`` divided by the
    product of the strides of stages ``1..i``.
    """

    encoder: StagedEncoder
    decoder: UNetDecoder

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """``(B, C_in, *S)`` -> logits; see the class docstring for the deep-supervision list."""
        return self.decoder(self.encoder(x))

    @property
    def deep_supervision(self) -> bool:
        """Whether forward returns one output per decoder stage; settable (stored on the decoder)."""
        return self.decoder.deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self.decoder.deep_supervision = bool(enabled)

    def feature_map_size(self, input_size: Sequence[int]) -> int:
        """Feature-map elements (batch size 1) the network produces for a patch of ``input_size``.

        The sum of the encoder's and the decoder's ``feature_map_size``: every conv's output (one count per
        conv-norm-nonlin unit), residual skip paths that pool or project, transposed-conv outputs and the
        seg layers that run. Computed from the architecture alone, without running the network; the
        planner compares it (times batch size) with its memory reference value.
        """
        if len(input_size) != len(self.encoder.strides[0]):
            raise ValueError(
                f"input_size {list(input_size)} must have {len(self.encoder.strides[0])} spatial axes "
                "for this network."
            )
        return self.encoder.feature_map_size(input_size) + self.decoder.feature_map_size(input_size)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """nnU-Net's initialisation of one module; use ``network.apply(network.initialize)``."""
        init_weights_he(module, 1e-2)

    @classmethod
    def from_spec(
        cls,
        spec: NetworkSpec,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool,
        **overrides: Any,
    ) -> DynamicUNet:
        """Build from ``spec`` with nnU-Net's layers (:meth:`LayerOps.nnunet_defaults`).

        Conv bias, instance norm (affine, eps 1e-5), LeakyReLU(0.01), no dropout.

        ``overrides`` replace any constructor keyword (e.g. ``ops=LayerOps(...)`` for other layers).
        Weights are PyTorch's defaults; call ``network.apply(network.initialize)`` for nnU-Net's.
        """
        layout = EncoderLayout(spec.features_per_stage, spec.kernel_sizes, spec.strides, spec.n_conv_per_stage)
        kwargs: dict[str, Any] = {
            "input_channels": input_channels,
            "layout": layout,
            "ops": LayerOps.nnunet_defaults(spec.ndim),
            "num_classes": num_classes,
            "n_conv_per_stage_decoder": list(spec.n_conv_per_stage_decoder),
            "deep_supervision": deep_supervision,
        }
        kwargs.update(overrides)
        return cls(**kwargs)
