"""Resampling against a straightforward scipy.ndimage reference (explicit coordinates + map_coordinates)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from AutoSegNetLib.preprocessing.resampling import (
    compute_new_shape,
    label_values_in,
    resample_image,
    resample_probabilities,
    resample_seg,
    resample_volume,
    separate_axis,
)


def reference(volume: np.ndarray, new_shape, order: int) -> np.ndarray:
    """Sample voxel centres aligned with the image extent, edge values repeated (skimage.resize's grid)."""
    axes = [(2 * np.arange(n_out) + 1) * n_in / (2 * n_out) - 0.5 for n_in, n_out in zip(volume.shape, new_shape)]
    coords = np.meshgrid(*axes, indexing="ij")
    return map_coordinates(volume.astype(np.float64), coords, order=order, mode="nearest")


def reference_separate(volume: np.ndarray, new_shape, order: int, order_z: int, axis: int) -> np.ndarray:
    """In-plane slice by slice with ``order``, then along ``axis`` with ``order_z``."""
    moved = np.moveaxis(volume, axis, 0)
    plane_shape = [new_shape[a] for a in range(volume.ndim) if a != axis]
    inplane = np.stack([reference(s, plane_shape, order) for s in moved])
    return np.moveaxis(reference(inplane, [new_shape[axis], *plane_shape], order_z), 0, axis)


def argmax_labels(labels: np.ndarray, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label with the largest value (ties to the higher label) and whether the top two are (nearly) tied."""
    winner = labels[len(labels) - 1 - np.argmax(stack[::-1], axis=0)]
    top = np.sort(stack, axis=0)
    tied = top[-1] - top[-2] < 1e-6 if len(labels) > 1 else np.zeros(winner.shape, bool)
    return winner, tied


def reference_seg(seg: np.ndarray, new_shape, order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One-hot, interpolate each label, argmax; also where two labels tie (either answer is right there)."""
    labels = np.unique(seg)
    return argmax_labels(labels, np.stack([reference((seg == v).astype(np.float64), new_shape, order) for v in labels]))


def assert_labels_equal_except_ties(ours: np.ndarray, expected: tuple[np.ndarray, np.ndarray]) -> None:
    winner, tied = expected
    assert not np.any((ours != winner) & ~tied)


@pytest.fixture
def rng():
    return np.random.default_rng(42)


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("new_shape", [(9, 10, 15), (3, 20, 4), (1, 5, 7), (14, 26, 22)])
def test_image_resampling_matches_the_map_coordinates_reference(rng, order, new_shape):
    volume = rng.normal(size=(7, 13, 11)).astype(np.float32)
    ours = resample_volume(volume, new_shape, order)
    assert ours.shape == new_shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference(volume, new_shape, order), atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_anisotropic_resampling_does_the_coarse_axis_separately_with_nearest(rng, axis):
    volume = rng.normal(size=(6, 9, 8)).astype(np.float32)
    new_shape = [11, 5, 13]
    ours = resample_volume(volume, new_shape, order=3, order_z=0, axis=axis)
    np.testing.assert_allclose(ours, reference_separate(volume, new_shape, 3, 0, axis), atol=1e-5)


def test_multichannel_images_are_resampled_per_channel_and_clipped_to_the_input_range(rng):
    data = rng.normal(size=(2, 6, 8, 7)).astype(np.float32)
    data[1] *= 100
    out = resample_image(data, (12, 5, 9), [1.0, 1.0, 1.0], [0.5, 1.4, 0.78])
    assert out.shape == (2, 12, 5, 9) and out.dtype == np.float32
    for c in range(2):
        expected = np.clip(reference(data[c], (12, 5, 9), 3), data[c].min(), data[c].max())
        np.testing.assert_allclose(out[c], expected, rtol=1e-5, atol=1e-4)


def test_image_with_unchanged_shape_is_returned_as_it_is(rng):
    data = rng.normal(size=(1, 4, 5, 6)).astype(np.float32)
    assert resample_image(data, (4, 5, 6), [1, 1, 1], [1, 1, 1]) is data


def test_probabilities_use_linear_interpolation_without_clipping(rng):
    probs = rng.random((3, 5, 6, 7)).astype(np.float32)
    out = resample_probabilities(probs, (8, 3, 10), [1, 1, 1], [1, 1, 1])
    for k in range(3):
        np.testing.assert_allclose(out[k], reference(probs[k], (8, 3, 10), 1), atol=1e-6)


@pytest.mark.parametrize("new_shape", [(17, 7, 13), (5, 31, 4), (12, 15, 9)])
def test_label_resampling_matches_one_hot_reference_and_keeps_the_label_set(rng, new_shape):
    seg = rng.integers(-1, 4, size=(12, 15, 9)).astype(np.int16)
    ours = resample_seg(seg, new_shape, [1, 1, 1], [1, 1, 1])
    assert ours.dtype == np.int16
    assert_labels_equal_except_ties(ours, reference_seg(seg, new_shape))
    assert set(np.unique(ours)) <= set(np.unique(seg))


@pytest.mark.parametrize("new_shape", [(17, 29, 53), (45, 13, 20), (7, 80, 11)])
def test_small_labels_resampled_inside_their_boxes_equal_the_whole_volume_reference(new_shape):
    seg = np.zeros((30, 40, 35), np.int16)
    seg[5:9, 10:20, 3:8] = 1
    seg[20:30, 0:5, 30:35] = 2
    seg[0, 39, 0] = 3
    seg[12:14, 22:30, 10:12] = 4
    assert_labels_equal_except_ties(resample_seg(seg, new_shape, [1, 1, 1], [1, 1, 1]), reference_seg(seg, new_shape))


def test_label_resampling_never_creates_a_label_between_two_others():
    seg = np.zeros((1, 1, 8), np.int16)
    seg[..., 4:] = 2  # linear interpolation of raw values would produce 1 at the boundary
    out = resample_seg(seg, (1, 1, 21), [999, 1, 1], [999, 1, 8 / 21])
    assert set(np.unique(out)) == {0, 2}


def test_anisotropic_labels_use_nearest_along_the_coarse_axis(rng):
    seg = rng.integers(0, 3, size=(5, 12, 10)).astype(np.int16)
    out = resample_seg(seg, (9, 7, 16), [5.0, 1.0, 1.0], [3.0, 1.5, 0.6])
    labels = np.unique(seg)
    stack = np.stack([reference_separate((seg == v).astype(float), (9, 7, 16), 1, 0, 0) for v in labels])
    assert_labels_equal_except_ties(out, argmax_labels(labels, stack))


@pytest.mark.parametrize(("spacing", "new_spacing", "expected"), [
    ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], None),
    ([6.5, 0.78, 0.78], [6.5, 0.78, 0.78], 0),
    ([0.5, 0.5, 2.0], [0.5, 0.5, 2.0], 2),
    ([1.0, 1.0, 1.0], [4.0, 1.0, 1.0], 0),      # the target spacing decides when the current one is isotropic
    ([999.0, 1.0, 1.0], [999.0, 1.0, 1.0], 0),  # 2D images: only in-plane
    ([4.0, 4.0, 1.0], [4.0, 4.0, 1.0], None),   # two equally coarse axes: no single out-of-plane axis
    ([3.0, 1.0, 1.0], [3.0, 1.0, 1.0], None),   # ratio 3 is not above the threshold
])
def test_separate_axis_follows_the_anisotropy_rule(spacing, new_spacing, expected):
    assert separate_axis(spacing, new_spacing) == expected


def test_new_shape_rounds_physical_size_over_target_spacing():
    assert compute_new_shape((25, 256, 256), (6.5, 0.78125, 0.78125), (6.5, 1.0, 1.0)) == (25, 200, 200)
    assert compute_new_shape((1, 512, 512), (999.0, 1.0, 1.0), (999.0, 0.5, 3.0)) == (1, 1024, 171)


def test_label_values_are_found_for_negative_and_large_labels():
    assert label_values_in(np.array([[-1, 0, 5]])) == [-1, 0, 5]
    assert label_values_in(np.array([0, 100000])) == [0, 100000]
    assert label_values_in(np.zeros(0, int)) == []
