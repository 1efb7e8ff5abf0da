"""Intensity normalisation schemes, one per channel, looked up by nnU-Net's names.

Each scheme is a small class with ``__call__(image (Z, Y, X) float32, mask (Z, Y, X) bool | None) ->
(Z, Y, X) float32``. ``mask`` is the non-zero region of the case (voxels that belong to the image); it is
used only where the configuration says ``use_mask_for_norm``. Schemes that need dataset-wide statistics
(CT) receive them from ``plans.foreground_intensity_properties[str(channel)]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError, unknown_name_error

_EPS = 1e-8


@dataclass
class Normalization:
    """Base class: ``use_mask`` restricts the statistics (and the change) to the non-zero mask."""

    use_mask: bool = False
    intensity_properties: Mapping[str, float] | None = None

    name = ""

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError


class ZScoreNormalization(Normalization):
    """Per-image z-score; with ``use_mask`` the statistics come from, and only change, the masked voxels."""

    name = "ZScoreNormalization"

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        image = image.astype(np.float32, copy=False)
        if self.use_mask and mask is not None:
            # outside the mask the image is zero (cropping guarantees it) and stays untouched, as in nnU-Net
            values = image[mask].astype(np.float64)
            if values.size == 0:
                return image
            mean, std = values.mean(), values.std()
            image[mask] = (values - mean) / max(std, _EPS)
            return image
        mean, std = float(image.mean(dtype=np.float64)), float(image.std(dtype=np.float64))
        image -= np.float32(mean)
        image /= np.float32(max(std, _EPS))
        return image


class CTNormalization(Normalization):
    """Clip to the dataset's foreground 0.5/99.5 percentiles, then z-score with its foreground mean/std."""

    name = "CTNormalization"
    required = ("mean", "std", "percentile_00_5", "percentile_99_5")

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        props = self.intensity_properties
        missing = [k for k in self.required if props is None or k not in props]
        if missing:
            raise AutoSegNetError(
                f"CTNormalization needs the dataset's foreground intensity statistics {missing} in plans.json "
                "(foreground_intensity_properties); re-run `autosegnet plan` to compute them."
            )
        image = image.astype(np.float32, copy=False)
        np.clip(image, props["percentile_00_5"], props["percentile_99_5"], out=image)
        image -= np.float32(props["mean"])
        image /= np.float32(max(float(props["std"]), _EPS))
        return image


class NoNormalization(Normalization):
    """Leave intensities as they are (only cast to float32)."""

    name = "NoNormalization"

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        return image.astype(np.float32, copy=False)


class RescaleTo01Normalization(Normalization):
    """Shift the minimum to 0 and scale the maximum to 1 (per image)."""

    name = "RescaleTo01Normalization"

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        image = image.astype(np.float32, copy=False)
        image -= image.min()
        image /= max(float(image.max()), _EPS)
        return image


class RGBTo01Normalization(Normalization):
    """8-bit colour channels: divide by 255. Values outside [0, 255] are an error."""

    name = "RGBTo01Normalization"

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        lo, hi = float(image.min()), float(image.max())
        if lo < 0 or hi > 255:
            raise AutoSegNetError(
                f"RGBTo01Normalization expects 8-bit values in [0, 255], got [{lo:g}, {hi:g}]. Use "
                "ZScoreNormalization or RescaleTo01Normalization for this channel (plans.json, normalization_schemes)."
            )
        image = image.astype(np.float32, copy=False)
        image /= np.float32(255.0)
        return image


NORMALIZATIONS: dict[str, type[Normalization]] = {
    cls.name: cls
    for cls in (CTNormalization, ZScoreNormalization, NoNormalization, RescaleTo01Normalization, RGBTo01Normalization)
}


def normalization_for(name: str, use_mask: bool = False,
                      intensity_properties: Mapping[str, float] | None = None) -> Normalization:
    """The scheme called ``name`` (nnU-Net's names), configured; unknown names get a "did you mean"."""
    if name not in NORMALIZATIONS:
        raise unknown_name_error("normalization scheme", name, NORMALIZATIONS)
    return NORMALIZATIONS[name](use_mask=use_mask, intensity_properties=intensity_properties)


def normalize(data: np.ndarray, schemes: list[str], use_mask_for_norm: list[bool], mask: np.ndarray | None,
              intensity_properties: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """Normalise every channel of ``data`` ``(C, Z, Y, X)`` in place (float32) with its scheme.

    ``mask`` ``(Z, Y, X)`` bool is the non-zero region; ``intensity_properties`` maps ``str(channel)`` to the
    dataset's foreground statistics (used by CTNormalization).
    """
    if len(schemes) != data.shape[0] or len(use_mask_for_norm) != data.shape[0]:
        raise AutoSegNetError(
            f"The image has {data.shape[0]} channels but the plan lists {len(schemes)} normalization schemes and "
            f"{len(use_mask_for_norm)} use_mask_for_norm flags; the plan and the dataset do not match "
            "(re-run `autosegnet plan`)."
        )
    for c, (name, use_mask) in enumerate(zip(schemes, use_mask_for_norm)):
        scheme = normalization_for(name, bool(use_mask), intensity_properties.get(str(c)))
        data[c] = scheme(data[c], mask)
    return data
