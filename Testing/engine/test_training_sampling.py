"""Patch sampling: nnU-Net's oversampling rule, border padding, 2D slices from 3D cases, splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from AutoSegNetLib.errors import AutoSegNetError, DatasetFormatError
from AutoSegNetLib.training.augmentation import AugmentationGeometry, enlarged_patch_size
from AutoSegNetLib.training.sampling import PatchSampler, box_bounds, crop_padded, is_forced_foreground
from AutoSegNetLib.training.splits import cases_for_fold, kfold_splits, load_or_create_splits


class ArrayCases:
    """Cases held in memory: ``{name: (data, seg, properties)}``."""

    def __init__(self, cases):
        self.cases = cases

    def load_case(self, name):
        return self.cases[name]


def one_voxel_case(shape=(12, 14, 16), voxel=(5, 6, 7), label=1, channels=1):
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(1, *shape).repeat(channels, 0)
    seg = np.zeros((1, *shape), np.int16)
    seg[(0, *voxel)] = label
    return data, seg, {"class_locations": {str(label): np.array([[0, *voxel]])}}


@pytest.mark.parametrize("batch_size, forced", [(2, [1]), (7, [5, 6]), (9, [6, 7, 8]), (3, [2]), (1, [])])
def test_the_last_third_of_every_batch_is_forced_to_foreground(batch_size, forced):
    assert [i for i in range(batch_size) if is_forced_foreground(i, batch_size, 0.33)] == forced


def test_box_bounds_split_the_padding_evenly_and_fit_patches_larger_than_the_case():
    assert box_bounds([20], [16], [5]) == ([-3], [20 + 2 + 1 - 16])
    lows, highs = box_bounds([10], [16], [0])  # the patch is larger than the case: it must be padded
    assert lows == [-3] and highs == [10 + 3 - 16]


def test_crop_outside_the_case_is_padded_with_zero_and_minus_one():
    data = np.ones((2, 4, 4), np.float32)
    seg = np.ones((1, 4, 4), np.int16)
    crop = crop_padded(data, [-1, 2], [3, 3], 0.0)
    labels = crop_padded(seg, [-1, 2], [3, 3], -1)
    assert crop.shape == (2, 3, 3) and labels.shape == (1, 3, 3)
    assert (crop[:, 0] == 0).all() and (crop[:, 1:, :2] == 1).all() and (crop[:, :, 2] == 0).all()
    assert (labels[0, 0] == -1).all() and labels[0, 1, 2] == -1 and labels[0, 1, 0] == 1
    assert crop.flags.writeable


@pytest.mark.parametrize("patch", [[8, 8, 8], [4, 10, 10]])
def test_forced_samples_contain_the_foreground_voxel(patch):
    cases = ArrayCases({"a": one_voxel_case(), "b": one_voxel_case(voxel=(0, 0, 0), label=2)})
    sampler = PatchSampler(cases, ["a", "b"], patch, patch, batch_size=2, oversample_foreground=0.33)
    for seed in range(20):
        data, seg, _ = sampler.sample(np.random.default_rng(seed), sample_index=1)
        assert data.shape == (1, *patch) and seg.shape == (1, *patch)
        assert (seg > 0).sum() == 1


def test_unforced_samples_are_random_and_sometimes_miss_the_foreground():
    cases = ArrayCases({"a": one_voxel_case()})
    sampler = PatchSampler(cases, ["a"], [4, 4, 4], [4, 4, 4], batch_size=2, oversample_foreground=0.33)
    hits = [(sampler.sample(np.random.default_rng(s), 0)[1] > 0).any() for s in range(30)]
    assert not all(hits)


def test_sampling_is_a_function_of_the_random_generator():
    cases = ArrayCases({"a": one_voxel_case(), "b": one_voxel_case(voxel=(3, 3, 3))})
    sampler = PatchSampler(cases, ["a", "b"], [10, 10, 10], [6, 6, 6], batch_size=2, oversample_foreground=0.5)
    first = sampler.sample(np.random.default_rng(7), 0)
    second = sampler.sample(np.random.default_rng(7), 0)
    assert first[2] == second[2]
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_2d_configurations_sample_slices_of_3d_cases_and_forced_ones_hold_foreground():
    cases = ArrayCases({"a": one_voxel_case(channels=2)})
    sampler = PatchSampler(cases, ["a"], [8, 8], [8, 8], batch_size=3, oversample_foreground=0.33)
    data, seg, _ = sampler.sample(np.random.default_rng(0), sample_index=2)
    assert data.shape == (2, 8, 8) and seg.shape == (1, 8, 8)
    assert (seg == 1).sum() == 1
    # the slice is the one holding the voxel: data values of slice z=5 of the arange volume
    assert data[0][seg[0] == 1][0] == 5 * 14 * 16 + 6 * 16 + 7


def test_the_ignore_label_is_never_the_class_to_centre_on():
    data, seg, _ = one_voxel_case()
    seg[0, 0, 0, 0] = 3
    props = {"class_locations": {"1": np.zeros((0, 4), int), "3": np.array([[0, 0, 0, 0]])}}
    sampler = PatchSampler(ArrayCases({"a": (data, seg, props)}), ["a"], [4, 4, 4], [4, 4, 4], 1, 1.0,
                           ignore_label=3)
    assert sampler._foreground_class_voxels(np.random.default_rng(0), "a", props) is None


def test_enlarged_patch_matches_nnunets_get_patch_size():
    # nnU-Net rotates the corner vector about each axis in turn: for (40, 56, 40) and 30 deg the per-axis maxima
    # are (62.64, 68.50, 54.64) (z-, x- and y-rotation), divided by the smallest scale 0.85 and truncated
    assert enlarged_patch_size([40, 56, 40], (-np.pi / 6, np.pi / 6), (0.85, 1.25)) == [73, 80, 64]
    # 2D: the angle is capped at 90 deg, which swaps the axes: (56, 56) / 0.85
    assert enlarged_patch_size([56, 40], (-np.pi, np.pi), (0.85, 1.25)) == [65, 65]


def test_thin_3d_patches_use_dummy_2d_augmentation_with_full_rotation():
    geometry = AugmentationGeometry.for_patch([8, 64, 64])
    assert geometry.dummy_2d and geometry.sampled_patch_size[0] == 8
    assert geometry.rotation == pytest.approx((-np.pi, np.pi))
    cubic = AugmentationGeometry.for_patch([32, 32, 32])
    assert not cubic.dummy_2d and cubic.mirror_axes == (0, 1, 2)
    assert cubic.rotation == pytest.approx((-np.pi / 6, np.pi / 6))


# ----- splits ------------------------------------------------------------------------------------------------
def test_default_splits_equal_scikit_learns_seeded_kfold():
    sklearn = pytest.importorskip("sklearn.model_selection")
    names = [f"case_{i:03d}" for i in (7, 3, 11, 0, 5, 9, 1, 2, 4, 6, 8, 10, 12)]
    ours = kfold_splits(names)
    ordered = sorted(names)
    theirs = [{"train": [ordered[i] for i in tr], "val": [ordered[i] for i in te]}
              for tr, te in sklearn.KFold(n_splits=5, shuffle=True, random_state=12345).split(ordered)]
    assert ours == theirs


def test_splits_file_is_written_once_and_a_user_file_is_respected(tmp_path):
    names = [f"c{i}" for i in range(6)]
    splits = load_or_create_splits(tmp_path, names)
    assert len(splits) == 5 and sorted(sum((s["val"] for s in splits), [])) == names
    custom = [{"train": ["c0", "c1"], "val": ["c2"]}]
    (tmp_path / "splits_final.json").write_text(json.dumps(custom))
    assert load_or_create_splits(tmp_path, names) == custom
    assert cases_for_fold(custom, 0, names) == (["c0", "c1"], ["c2"])
    assert cases_for_fold(custom, "all", names) == (names, names)


def test_bad_folds_and_bad_split_files_are_explained(tmp_path):
    with pytest.raises(AutoSegNetError, match="Fold 5 does not exist"):
        cases_for_fold(kfold_splits(["a", "b", "c", "d", "e"]), 5, ["a"])
    (tmp_path / "splits_final.json").write_text(json.dumps([{"train": ["zz"], "val": ["a"]}]))
    with pytest.raises(DatasetFormatError, match="not preprocessed.*zz"):
        load_or_create_splits(tmp_path, ["a", "b"])
