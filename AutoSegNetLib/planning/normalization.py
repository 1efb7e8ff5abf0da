"""Which normalisation each channel gets, decided from its name in dataset.json (nnU-Net's rule).

``CT`` -> ``CTNormalization`` (clip to the foreground's 0.5 / 99.5 percentiles, z-score with the foreground's
global mean and std); ``noNorm`` -> none; ``zscore`` -> z-score; ``rescale_to_0_1``; ``rgb_to_0_1``; any other
name -> per-image z-score. Names are compared case-insensitively.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Channel name (case-folded) -> normalisation scheme name.
SCHEME_BY_CHANNEL_NAME: dict[str, str] = {
    "ct": "CTNormalization",
    "nonorm": "NoNormalization",
    "zscore": "ZScoreNormalization",
    "rescale_to_0_1": "RescaleTo01Normalization",
    "rgb_to_0_1": "RGBTo01Normalization",
}
DEFAULT_SCHEME = "ZScoreNormalization"
#: Schemes that set voxels outside the non-zero mask to 0 when ``use_mask_for_norm`` is on.
MASKABLE_SCHEMES = frozenset({"ZScoreNormalization"})
#: Below this median (cropped / original) volume, z-score is computed inside the non-zero mask only.
MASK_FOR_NORM_THRESHOLD = 0.75


def scheme_for_channel(channel_name: str) -> str:
    """The normalisation scheme for a channel called ``channel_name``."""
    return SCHEME_BY_CHANNEL_NAME.get(channel_name.casefold(), DEFAULT_SCHEME)


def normalization_plan(channel_names: Mapping[str, str],
                       median_relative_size_after_crop: float) -> tuple[list[str], list[bool]]:
    """``(schemes, use_mask_for_norm)`` per channel, in channel-index order.

    The mask is used only when cropping to the non-zero region shrank the median case below 75 % (the
    image has a large zero background, e.g. skull-stripped brains) and the scheme is z-score.
    """
    schemes = [scheme_for_channel(channel_names[k]) for k in sorted(channel_names, key=int)]
    use_mask = median_relative_size_after_crop < MASK_FOR_NORM_THRESHOLD
    return schemes, [use_mask and s in MASKABLE_SCHEMES for s in schemes]
