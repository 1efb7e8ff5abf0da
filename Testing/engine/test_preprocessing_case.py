"""One case in memory: crop, normalise, resample, properties, the inverse, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _helpers_preprocessing import (
    SHARED_DATA,
    brain_raw,
    configuration,
    drive_raw,
    hippocampus_raw,
    isbi_raw,
    plans_for,
)
from scipy.ndimage import maximum_filter, minimum_filter

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.dataset.raw import RawDataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio.geometry import Geometry
from AutoSegNetLib.planning.plans import ResamplingSettings
from AutoSegNetLib.preprocessing import (
    geometry_from_properties,
    preprocess_case,
    revert_probabilities,
    revert_segmentation,
)
from AutoSegNetLib.preprocessing.cropping import uncrop
from AutoSegNetLib.preprocessing.resampling import resample_probabilities

GEOMETRY = Geometry((3.0, 1.0, 0.8), (10.0, -5.0, 2.5), (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))


def a_dataset_json(channels: int = 1, labels: dict | None = None, **extra) -> DatasetJson:
    return DatasetJson(channel_names={str(c): f"MR{c}" for c in range(channels)},
                       labels=labels or {"background": 0, "a": 1, "b": 2}, num_training=1, file_ending=".nii.gz",
                       **extra)


def a_case(shape=(12, 30, 26), channels: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image that is zero around a box, with two blob labels inside."""
    rng = np.random.default_rng(seed)
    image = np.zeros((channels, *shape), np.float32)
    image[:, 2:10, 4:27, 3:22] = rng.normal(100, 20, size=(channels, 8, 23, 19))
    seg = np.zeros(shape, np.uint8)
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    seg[((zz - 5) / 3) ** 2 + ((yy - 12) / 6) ** 2 + ((xx - 10) / 5) ** 2 < 1] = 1
    seg[((zz - 6) / 3) ** 2 + ((yy - 20) / 4) ** 2 + ((xx - 14) / 5) ** 2 < 1] = 2
    return image, seg


def border_voxels(seg: np.ndarray, width: int = 1) -> np.ndarray:
    """Voxels within ``width`` of a label boundary."""
    size = 2 * width + 1
    return maximum_filter(seg, size=size) != minimum_filter(seg, size=size)


def plans_3d(spacing, transpose=None, schemes=("ZScoreNormalization",), **kwargs):
    conf = configuration("3d_fullres", list(spacing), [8, 16, 16], list(schemes), **kwargs)
    return plans_for("Dataset001_Test", [conf], transpose), conf


def test_crop_marks_background_outside_the_nonzero_region_and_records_the_box():
    image, seg = a_case()
    plans, conf = plans_3d(GEOMETRY.spacing)
    data, seg_out, props = preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())
    assert props["bbox"] == [[2, 10], [4, 27], [3, 22]]
    assert data.shape == (1, 8, 23, 19) and data.dtype == np.float32
    assert seg_out.shape == (1, 8, 23, 19) and seg_out.dtype == np.int16
    assert props["shape_before_cropping"] == [12, 30, 26] and props["shape_after_cropping"] == [8, 23, 19]
    assert set(np.unique(seg_out)) == {0, 1, 2}  # the box is full of non-zero voxels: no -1 inside
    json.dumps(props)  # JSON-serialisable as it is


def test_background_in_the_crop_box_but_outside_the_mask_becomes_minus_one():
    image, seg = a_case()
    image[:, 2:10, 4:8, 3:6] = 0  # a zero corner touching the box border (not a hole)
    plans, conf = plans_3d(GEOMETRY.spacing)
    _, seg_out, _ = preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())
    assert (seg_out[0, :, 0:4, 0:3] == -1).all()
    assert (seg_out >= 0).sum() == (seg_out.size - 8 * 4 * 3)


def test_an_all_zero_image_keeps_its_full_extent():
    image = np.zeros((1, 4, 5, 6), np.float32)
    plans, conf = plans_3d(GEOMETRY.spacing)
    data, seg_out, props = preprocess_case(image, np.zeros((4, 5, 6), np.uint8), GEOMETRY, plans, conf,
                                           a_dataset_json())
    assert props["bbox"] == [[0, 4], [0, 5], [0, 6]] and data.shape == (1, 4, 5, 6)
    assert (seg_out == -1).all()


def test_properties_record_everything_needed_to_go_back():
    image, seg = a_case()
    plans, conf = plans_3d([1.5, 1.5, 1.5])
    _, seg_out, props = preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())
    assert geometry_from_properties(props) == GEOMETRY
    assert props["original_shape"] == [12, 30, 26]
    assert props["spacing"] == [3.0, 1.0, 0.8] and props["spacing_after_resampling"] == [1.5, 1.5, 1.5]
    assert props["shape_after_resampling"] == [16, 15, 10] == list(seg_out.shape[1:])
    assert props["configuration"] == "3d_fullres" and len(props["input_hash"]) == 32


def test_class_locations_point_at_voxels_of_their_class():
    image, seg = a_case()
    plans, conf = plans_3d(GEOMETRY.spacing)
    _, seg_out, props = preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())
    locations = props["class_locations"]
    assert set(locations) == {"1", "2"}
    for key, points in locations.items():
        points = np.asarray(points)
        assert points.shape == ((seg_out == int(key)).sum(), 4)  # fewer than 10000 voxels: all of them
        assert (seg_out[tuple(points.T)] == int(key)).all()


def test_regions_get_locations_per_region():
    image, seg = a_case()
    plans, conf = plans_3d(GEOMETRY.spacing)
    dj = a_dataset_json(labels={"background": 0, "whole": [1, 2], "core": 2}, regions_class_order=[1, 2])
    _, seg_out, props = preprocess_case(image, seg, GEOMETRY, plans, conf, dj)
    assert set(props["class_locations"]) == {"1,2", "2"}
    assert len(props["class_locations"]["1,2"]) == (seg_out > 0).sum()


def test_transpose_puts_the_out_of_plane_axis_first_and_reverting_undoes_it():
    image, seg = a_case()
    image, seg = image.transpose(0, 2, 3, 1), seg.transpose(1, 2, 0)  # raw (Y, X, Z)-like arrays
    geometry = Geometry((1.0, 0.8, 3.0))
    plans, conf = plans_3d([3.0, 1.0, 0.8], transpose=[2, 0, 1])
    data, seg_out, props = preprocess_case(image, seg, geometry, plans, conf, a_dataset_json())
    assert props["spacing"] == [3.0, 1.0, 0.8] and data.shape == (1, 8, 23, 19)
    back = revert_segmentation(seg_out[0], props, plans, conf)
    np.testing.assert_array_equal(back, seg)


def test_2d_configuration_keeps_each_cases_own_out_of_plane_spacing():
    image, seg = a_case()
    conf = configuration("2d", [2.0, 1.6], [16, 16], ["ZScoreNormalization"])
    plans = plans_for("Dataset001_Test", [conf])
    _, seg_out, props = preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())
    assert props["spacing_after_resampling"] == [3.0, 2.0, 1.6]
    assert props["shape_after_resampling"] == [8, 12, 10]


@pytest.mark.parametrize(("spacing", "target"), [
    ((1.0, 1.0, 1.0), [1.0, 1.0, 1.0]),      # no resampling: exact
    ((3.0, 1.0, 0.8), [1.5, 0.7, 1.1]),      # mixed up/down sampling
    ((5.0, 0.8, 0.8), [5.0, 1.2, 1.2]),      # anisotropic: z handled separately
    ((999.0, 1.0, 1.0), [999.0, 0.6, 1.4]),  # 2D image
])
def test_a_label_map_preprocessed_and_reverted_comes_back_equal_up_to_borders(spacing, target):
    image, seg = a_case()
    if spacing[0] == 999.0:
        image, seg = image[:, 5:6], seg[5:6]
    geometry = Geometry(spacing, GEOMETRY.origin, GEOMETRY.direction, image_dim=2 if spacing[0] == 999 else 3)
    plans, conf = plans_3d(target)
    _, seg_out, props = preprocess_case(image, seg, geometry, plans, conf, a_dataset_json())
    back = revert_segmentation(seg_out[0], props, plans, conf)
    assert back.shape == seg.shape and geometry_from_properties(props) == geometry
    wrong = back != seg
    assert not np.any(wrong & ~border_voxels(seg, 2))
    if list(spacing) == list(target):
        assert not wrong.any()


def test_reverted_probabilities_have_the_raw_shape_and_background_one_outside_the_crop():
    image, seg = a_case()
    plans, conf = plans_3d([1.5, 1.5, 1.5])
    _, seg_out, props = preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())
    probs = np.stack([(seg_out[0] == k).astype(np.float32) for k in range(3)])
    back = revert_probabilities(probs, props, plans, conf)
    assert back.shape == (3, 12, 30, 26) and back.dtype == np.float32
    np.testing.assert_allclose(back.sum(axis=0), 1.0, atol=1e-5)
    outside = np.ones((12, 30, 26), bool)
    outside[2:10, 4:27, 3:22] = False
    assert (back[0][outside] == 1).all() and (back[1:, outside] == 0).all()
    agree = np.argmax(back, axis=0) == seg
    assert not np.any(~agree & ~border_voxels(seg, 2))


@pytest.mark.parametrize("regions", [False, True])
def test_reverting_class_by_class_equals_resample_then_uncrop_then_transpose(regions: bool):
    image, seg = a_case()
    geometry = Geometry((2.5, 0.7, 0.9), GEOMETRY.origin, GEOMETRY.direction)
    plans, conf = plans_3d([1.0, 1.1, 1.0], transpose=[2, 0, 1])
    data, _, props = preprocess_case(image, seg, geometry, plans, conf, a_dataset_json())
    rng = np.random.default_rng(3)
    probs = rng.random((3, *data.shape[1:]), dtype=np.float32)
    r = conf.resampling
    resampled = resample_probabilities(probs, props["shape_after_cropping"], props["spacing_after_resampling"],
                                       props["spacing"], r.order_probabilities, r.order_z_anisotropic,
                                       r.anisotropy_threshold)
    fill = np.array([0.0 if regions else 1.0, 0.0, 0.0], np.float32)
    full = uncrop(resampled, props["bbox"], tuple(props["shape_before_cropping"]), fill)
    expected = full.transpose([0, *[a + 1 for a in plans.transpose_backward]])
    back = revert_probabilities(probs, props, plans, conf, regions=regions)
    assert back.shape == (3, *seg.shape) and back.flags.c_contiguous
    np.testing.assert_array_equal(back, expected)


def test_reverted_region_probabilities_are_zero_outside_the_crop():
    image, seg = a_case()
    plans, conf = plans_3d(GEOMETRY.spacing)
    _, seg_out, props = preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())
    probs = np.stack([(seg_out[0] > 0), (seg_out[0] == 2)]).astype(np.float32)
    back = revert_probabilities(probs, props, plans, conf, regions=True)
    np.testing.assert_array_equal(back, np.stack([seg > 0, seg == 2]).astype(np.float32))


def test_inference_without_a_label_map_uses_the_nonzero_mask_for_masked_zscore():
    image, _ = a_case()
    image[:, 2:10, 4:8, 3:6] = 0
    plans, conf = plans_3d(GEOMETRY.spacing, use_mask=[True])
    data, seg_out, props = preprocess_case(image, None, GEOMETRY, plans, conf, a_dataset_json())
    assert seg_out is None and "class_locations" not in props
    inside = np.ones(data.shape[1:], bool)
    inside[:, 0:4, 0:3] = False
    assert abs(float(data[0][inside].mean())) < 1e-4 and abs(float(data[0][inside].std()) - 1) < 1e-3
    assert (data[0][~inside] == 0).all()


def test_same_input_gives_the_same_hash_and_a_changed_voxel_another():
    image, seg = a_case()
    plans, conf = plans_3d(GEOMETRY.spacing)
    h1 = preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())[2]["input_hash"]
    h2 = preprocess_case(image.copy(), seg.copy(), GEOMETRY, plans, conf, a_dataset_json())[2]["input_hash"]
    image[0, 5, 5, 5] += 1
    h3 = preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())[2]["input_hash"]
    assert h1 == h2 != h3


# ----- bad input ---------------------------------------------------------------------------------------


def test_a_wrong_channel_count_names_dataset_json():
    image, seg = a_case(channels=2)
    plans, conf = plans_3d(GEOMETRY.spacing)
    with pytest.raises(AutoSegNetError, match=r"2 channels but dataset.json declares 1"):
        preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())


def test_a_label_map_of_another_shape_is_rejected():
    image, seg = a_case()
    plans, conf = plans_3d(GEOMETRY.spacing)
    with pytest.raises(AutoSegNetError, match=r"label map has shape \(12, 30, 25\) but the image has"):
        preprocess_case(image, seg[..., :25], GEOMETRY, plans, conf, a_dataset_json())


def test_undeclared_label_values_are_listed():
    image, seg = a_case()
    seg[0, 0, 0] = 7
    plans, conf = plans_3d(GEOMETRY.spacing)
    with pytest.raises(AutoSegNetError, match=r"values \[7\] that dataset.json does not declare"):
        preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())


def test_nan_in_the_image_is_rejected():
    image, seg = a_case()
    image[0, 3, 3, 3] = np.nan
    plans, conf = plans_3d(GEOMETRY.spacing)
    with pytest.raises(AutoSegNetError, match="NaN"):
        preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())


def test_an_image_without_a_channel_axis_is_rejected():
    image, seg = a_case()
    plans, conf = plans_3d(GEOMETRY.spacing)
    with pytest.raises(AutoSegNetError, match=r"must be \(C, Z, Y, X\)"):
        preprocess_case(image[0], seg, GEOMETRY, plans, conf, a_dataset_json())


def test_an_unknown_normalization_in_the_plan_suggests_a_name():
    image, seg = a_case()
    plans, conf = plans_3d(GEOMETRY.spacing, schemes=("CTNormalisation",))
    with pytest.raises(AutoSegNetError, match="Did you mean 'CTNormalization'"):
        preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())


def test_a_case_too_large_for_memory_fails_with_a_clear_message(monkeypatch):
    import AutoSegNetLib.preprocessing.memory as memory

    class Tiny:
        available = 1000

    monkeypatch.setattr(memory.psutil, "virtual_memory", lambda: Tiny())
    image, seg = a_case()
    plans, conf = plans_3d(GEOMETRY.spacing)
    with pytest.raises(AutoSegNetError, match=r"needs about .* GiB of memory but only 0.0 GiB.*fewer workers"):
        preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())


def test_reverting_a_prediction_of_the_wrong_shape_is_rejected():
    image, seg = a_case()
    plans, conf = plans_3d(GEOMETRY.spacing)
    _, _, props = preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json())
    with pytest.raises(AutoSegNetError, match=r"spatial shape \[8, 23, 18\] but this case was preprocessed to"):
        revert_probabilities(np.zeros((3, 8, 23, 18), np.float32), props, plans, conf)


# ----- real data -------------------------------------------------------------------------------------


def _real_case(build, tmp_path, index: int = 0):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    raw = RawDataset.open(build(tmp_path))
    case = raw.training_cases()[index]
    image, seg, geometry = raw.read_case(case)
    return raw, image, seg, geometry


@pytest.mark.parametrize(("build", "target", "schemes", "expected_shape"), [
    (hippocampus_raw, [1.4, 0.9, 1.2], ["ZScoreNormalization"], None),
    (brain_raw, [6.5, 1.0, 1.0], ["ZScoreNormalization"], (25, 200, 200)),
    (isbi_raw, [999.0, 2.0, 2.0], ["NoNormalization"], (1, 256, 256)),
    (drive_raw, [999.0, 1.5, 1.5], ["RGBTo01Normalization"] * 3, (1, 389, 377)),
], ids=["hippocampus-3d", "brain-anisotropic-nrrd", "isbi-2d-png", "drive-rgb-tif"])
def test_real_cases_round_trip_with_exact_geometry(tmp_path, build, target, schemes, expected_shape):
    raw, image, seg, geometry = _real_case(build, tmp_path)
    conf = configuration("3d_fullres", target, [8, 8, 8], schemes)
    plans = plans_for("Dataset001_Test", [conf])
    data, seg_out, props = preprocess_case(image, seg, geometry, plans, conf, raw.dataset_json)
    if expected_shape is not None:
        assert data.shape[1:] == expected_shape
    assert set(np.unique(seg_out)) <= {-1, *raw.dataset_json.label_values}
    if schemes[0] == "RGBTo01Normalization":
        assert data.shape[0] == 3 and data.min() >= 0 and data.max() <= 1
    back = revert_segmentation(seg_out[0], props, plans, conf)
    assert geometry_from_properties(props) == geometry and back.shape == seg.shape
    wrong = back != seg
    assert not np.any(wrong & ~border_voxels(seg, 2)), f"{wrong.sum()} voxels differ away from label borders"


def test_anisotropic_brain_keeps_its_slices_when_only_the_in_plane_spacing_changes(tmp_path):
    raw, image, seg, geometry = _real_case(brain_raw, tmp_path)
    assert geometry.spacing[0] == pytest.approx(6.5) and geometry.spacing[1] == pytest.approx(0.78125)
    conf = configuration("3d_fullres", [3.25, 0.78125, 0.78125], [8, 8, 8], ["ZScoreNormalization"],
                         resampling=ResamplingSettings())
    plans = plans_for("Dataset001_Test", [conf])
    data, seg_out, props = preprocess_case(image, seg, geometry, plans, conf, raw.dataset_json)
    # z doubles with nearest-neighbour (order 0): every output slice is a copy of an input slice
    assert props["shape_after_resampling"][0] == 2 * props["shape_after_cropping"][0]
    cropped_z = props["shape_after_cropping"][0]
    np.testing.assert_array_equal(data[0, 0], data[0, 1])
    assert data.shape[1] == 2 * cropped_z


def test_each_channel_of_a_multichannel_case_gets_its_own_scheme():
    image, seg = a_case(channels=2)
    image[1] *= 10
    stats = {"1": {"mean": 1000.0, "std": 100.0, "percentile_00_5": 0.0, "percentile_99_5": 1200.0}}
    conf = configuration("3d_fullres", list(GEOMETRY.spacing), [8, 16, 16], ["NoNormalization", "CTNormalization"])
    plans = plans_for("Dataset001_Test", [conf], intensities=stats)
    data, _, _ = preprocess_case(image, seg, GEOMETRY, plans, conf, a_dataset_json(channels=2))
    np.testing.assert_array_equal(data[0], image[0, 2:10, 4:27, 3:22])
    expected = (np.clip(image[1, 2:10, 4:27, 3:22], 0, 1200) - 1000) / 100
    np.testing.assert_allclose(data[1], expected, rtol=1e-5, atol=1e-5)
