"""Normalisation schemes: exact values on tiny arrays, and the registry as a whole."""

from __future__ import annotations

import numpy as np
import pytest

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.preprocessing.normalization import NORMALIZATIONS, normalization_for, normalize

CT_STATS = {"mean": 100.0, "std": 50.0, "percentile_00_5": -50.0, "percentile_99_5": 400.0}


def an_image() -> np.ndarray:
    return np.array([[[0.0, 2.0], [4.0, 6.0]]], dtype=np.float32)  # (Z, Y, X) = (1, 2, 2)


@pytest.mark.parametrize("name", sorted(NORMALIZATIONS))
def test_every_registered_scheme_returns_float32_of_the_same_shape_and_is_finite(name):
    scheme = normalization_for(name, intensity_properties=CT_STATS)
    out = scheme(np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 10)
    assert out.shape == (2, 3, 4) and out.dtype == np.float32 and np.isfinite(out).all()
    assert type(scheme).name == name


def test_registry_has_nnunets_names():
    assert set(NORMALIZATIONS) == {"CTNormalization", "ZScoreNormalization", "NoNormalization",
                                   "RescaleTo01Normalization", "RGBTo01Normalization"}


def test_an_unknown_scheme_suggests_the_closest_name():
    with pytest.raises(AutoSegNetError, match=r"Unknown normalization scheme 'ZscoreNormalisation'.*Did you mean "
                                              r"'ZScoreNormalization'"):
        normalization_for("ZscoreNormalisation")


def test_zscore_uses_the_whole_image():
    out = normalization_for("ZScoreNormalization")(an_image())
    std = np.std([0.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(out.ravel(), (np.array([0, 2, 4, 6]) - 3.0) / std, rtol=1e-6)


def test_zscore_with_mask_takes_statistics_inside_and_leaves_outside_untouched():
    mask = np.array([[[False, True], [True, True]]])
    out = normalization_for("ZScoreNormalization", use_mask=True)(an_image(), mask)
    inside = np.array([2.0, 4.0, 6.0])
    np.testing.assert_allclose(out[mask], (inside - 4.0) / inside.std(), rtol=1e-6)
    assert out[0, 0, 0] == 0.0


def test_zscore_of_a_constant_image_does_not_divide_by_zero():
    out = normalization_for("ZScoreNormalization")(np.full((1, 2, 2), 7.0, np.float32))
    np.testing.assert_array_equal(out, np.zeros((1, 2, 2)))


def test_ct_clips_to_the_dataset_percentiles_then_uses_the_dataset_mean_and_std():
    image = np.array([[[-1000.0, 100.0], [200.0, 3000.0]]], dtype=np.float32)
    out = normalization_for("CTNormalization", intensity_properties=CT_STATS)(image)
    np.testing.assert_allclose(out.ravel(), [(-50 - 100) / 50, 0.0, 2.0, (400 - 100) / 50])


def test_ct_without_dataset_statistics_says_to_re_plan():
    with pytest.raises(AutoSegNetError, match=r"foreground intensity statistics.*autosegnet plan"):
        normalization_for("CTNormalization", intensity_properties={"mean": 1.0})(an_image())


def test_no_normalization_keeps_values():
    np.testing.assert_array_equal(normalization_for("NoNormalization")(an_image()), an_image())


def test_rescale_maps_min_to_zero_and_max_to_one():
    out = normalization_for("RescaleTo01Normalization")(an_image() - 10)
    np.testing.assert_allclose(out.ravel(), [0, 1 / 3, 2 / 3, 1], rtol=1e-6)


def test_rgb_divides_by_255():
    image = np.array([[[0.0, 51.0], [255.0, 127.5]]], dtype=np.float32)
    np.testing.assert_allclose(normalization_for("RGBTo01Normalization")(image).ravel(), [0, 0.2, 1, 0.5])


def test_rgb_outside_8_bit_range_is_an_error_naming_the_alternatives():
    with pytest.raises(AutoSegNetError, match=r"\[0, 255\], got \[0, 300\].*ZScoreNormalization"):
        normalization_for("RGBTo01Normalization")(np.array([[[0.0, 300.0]]], np.float32))


def test_normalize_applies_each_channels_scheme_and_ct_statistics_by_channel_index():
    data = np.stack([an_image(), an_image() * 100]).astype(np.float32)
    normalize(data, ["NoNormalization", "CTNormalization"], [False, False], None, {"1": CT_STATS})
    np.testing.assert_array_equal(data[0], an_image())
    np.testing.assert_allclose(data[1].ravel(), [(0 - 100) / 50, (200 - 100) / 50, (400 - 100) / 50, 6.0])


def test_normalize_rejects_a_plan_with_a_different_channel_count():
    with pytest.raises(AutoSegNetError, match=r"2 channels but the plan lists 1 normalization"):
        normalize(np.zeros((2, 1, 2, 2), np.float32), ["ZScoreNormalization"], [False], None, {})
