"""``NetworkSpec``: the planned topology of a U-Net, as stored in a plans file's ``network`` entry.

Per-axis lists (kernel sizes, strides) are in the network's axis order, ``(Y, X)`` or ``(Z, Y, X)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, NoReturn

from AutoSegNetLib.errors import DatasetFormatError, did_you_mean


class NetworkSpecError(DatasetFormatError, ValueError):
    """A network spec (e.g. the ``network`` entry of plans.json) has a wrong, missing or unknown field."""


@dataclass
class NetworkSpec:
    """Topology of a dynamic U-Net; the network class adds channels, classes and the nnU-Net layer defaults.

    - ``name``: registered network class (``"PlainConvUNet"``, ``"ResidualEncoderUNet"``).
    - ``ndim``: 2 for ``(B, C, Y, X)`` inputs, 3 for ``(B, C, Z, Y, X)``.
    - ``features_per_stage``: encoder channels per stage; ``n_stages = len(features_per_stage) >= 2``.
    - ``kernel_sizes``/``strides``: per stage, one odd kernel size / one stride per axis; the first stride is
      usually all 1.
    - ``n_conv_per_stage``: conv units per encoder stage, or residual blocks per stage for
      ``ResidualEncoderUNet`` (nnU-Net's ``n_blocks_per_stage``); the networks take it as ``EncoderLayout.depths``.
    - ``n_conv_per_stage_decoder``: conv units per decoder stage, deepest first (``n_stages - 1`` entries).
    """

    name: str
    ndim: int
    features_per_stage: list[int]
    kernel_sizes: list[list[int]]
    strides: list[list[int]]
    n_conv_per_stage: list[int]
    n_conv_per_stage_decoder: list[int]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            _fail("name", f"must be a network class name, got {self.name!r}")
        if isinstance(self.ndim, bool) or self.ndim not in (2, 3):
            _fail("ndim", f"must be 2 or 3, got {self.ndim!r}")
        self.features_per_stage = _positive_ints(self.features_per_stage, "features_per_stage")
        n_stages = len(self.features_per_stage)
        if n_stages < 2:
            _fail("features_per_stage", f"needs at least 2 stages for a U-Net, got {self.features_per_stage}")
        self.kernel_sizes = _per_stage_per_axis(self.kernel_sizes, "kernel_sizes", n_stages, self.ndim)
        if any(k % 2 == 0 for kernel in self.kernel_sizes for k in kernel):
            _fail(
                "kernel_sizes", f"must be odd (to keep the size with 'same' padding), got {self.kernel_sizes}"
            )
        self.strides = _per_stage_per_axis(self.strides, "strides", n_stages, self.ndim)
        self.n_conv_per_stage = _positive_ints(self.n_conv_per_stage, "n_conv_per_stage", n_stages)
        self.n_conv_per_stage_decoder = _positive_ints(
            self.n_conv_per_stage_decoder, "n_conv_per_stage_decoder", n_stages - 1
        )

    @property
    def n_stages(self) -> int:
        """Number of encoder stages (the decoder has one fewer)."""
        return len(self.features_per_stage)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (plain lists and ints)."""
        return {
            "name": self.name,
            "ndim": self.ndim,
            "features_per_stage": list(self.features_per_stage),
            "kernel_sizes": [list(k) for k in self.kernel_sizes],
            "strides": [list(s) for s in self.strides],
            "n_conv_per_stage": list(self.n_conv_per_stage),
            "n_conv_per_stage_decoder": list(self.n_conv_per_stage_decoder),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "network spec") -> NetworkSpec:
        """Read :meth:`to_dict`'s output; unknown, missing or malformed fields raise :class:`NetworkSpecError`
        naming the field and ``source`` (e.g. ``"plans.json: configurations.3d_fullres.network"``)."""
        if not isinstance(data, Mapping):
            raise NetworkSpecError(
                f"{source}: must be a mapping of NetworkSpec fields, got {type(data).__name__}."
            )
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise NetworkSpecError(
                    f"{source}: unknown NetworkSpec field {key!r}.{did_you_mean(str(key), known)} "
                    f"Known fields: {', '.join(known)}."
                )
        missing = [name for name in known if name not in data]
        if missing:
            raise NetworkSpecError(f"{source}: missing NetworkSpec field(s) {', '.join(map(repr, missing))}.")
        try:
            return cls(**data)
        except NetworkSpecError as error:
            raise NetworkSpecError(f"{source}: {error}") from None


def _fail(field_name: str, problem: str) -> NoReturn:
    raise NetworkSpecError(f"NetworkSpec field {field_name!r} {problem}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_ints(values: Any, field_name: str, length: int | None = None) -> list[int]:
    if not isinstance(values, (list, tuple)) or not all(_is_int(v) and v > 0 for v in values):
        _fail(field_name, f"must be a list of positive integers, got {values!r}")
    if length is not None and len(values) != length:
        _fail(field_name, f"must have {length} entries, got {len(values)}: {list(values)}")
    return [int(v) for v in values]


def _per_stage_per_axis(values: Any, field_name: str, n_stages: int, ndim: int) -> list[list[int]]:
    if not isinstance(values, (list, tuple)) or len(values) != n_stages:
        _fail(field_name, f"must have one entry per stage ({n_stages}), got {values!r}")
    out = []
    for stage, per_axis in enumerate(values):
        if (
            not isinstance(per_axis, (list, tuple))
            or len(per_axis) != ndim
            or not all(_is_int(v) and v > 0 for v in per_axis)
        ):
            _fail(
                field_name, f"entry {stage} must be {ndim} positive integers (one per axis), got {per_axis!r}"
            )
        out.append([int(v) for v in per_axis])
    return out
