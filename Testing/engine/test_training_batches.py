"""Batches: augmentation output shapes, loss targets (deep supervision, regions, ignore), determinism."""

from __future__ import annotations

import numpy as np
import pytest

from AutoSegNetLib.training.augmentation import AugmentationGeometry, training_transforms
from AutoSegNetLib.training.batches import BatchSource, TargetSpec, deep_supervision_scales, make_targets
from AutoSegNetLib.training.distributed import batch_rows
from AutoSegNetLib.training.sampling import PatchSampler


class ArrayCases:
    def __init__(self, cases):
        self.cases = cases

    def load_case(self, name):
        return self.cases[name]


def blob_cases(shape=(14, 20, 20), channels=1, n=3, seed=0):
    rng = np.random.default_rng(seed)
    cases = {}
    for i in range(n):
        seg = np.zeros((1, *shape), np.int16)
        seg[0, 4:9, 5:12, 6:13] = 1
        seg[0, 9:12, 10:15, 3:8] = 2
        seg[0, :, :, :1] = -1
        data = (seg.astype(np.float32) + rng.normal(0, 0.1, (channels, *shape))).astype(np.float32)
        locations = {str(k): np.c_[np.zeros(int((seg == k).sum()), int), np.argwhere(seg[0] == k)] for k in (1, 2)}
        cases[f"c{i}"] = (data, seg, {"class_locations": locations})
    return ArrayCases(cases)


def source(patch, channels=1, augment=True, spec=None, rows=None, batch_size=3, seed=0):
    geometry = AugmentationGeometry.for_patch(patch)
    sampled = geometry.sampled_patch_size if augment else patch
    sampler = PatchSampler(blob_cases(channels=channels), ["c0", "c1", "c2"], sampled, patch, batch_size, 0.33)
    spec = spec or TargetSpec(scales=((1,) * len(patch), (2,) * len(patch)))
    return BatchSource(sampler, training_transforms(geometry) if augment else None, spec, seed, 0, rows)


@pytest.mark.parametrize("patch, channels", [([12, 16, 16], 1), ([16, 16], 1), ([4, 16, 16], 2), ([12, 16, 16], 3)],
                         ids=["3d", "2d", "anisotropic-dummy-2d", "multi-channel"])
def test_augmented_batches_have_the_network_patch_and_clean_labels(patch, channels):
    batches = [source(patch, channels).batch(i) for i in range(4)]
    for batch in batches:
        assert batch.data.shape == (3, channels, *patch) and batch.data.dtype == np.float32
        assert batch.targets[0].shape == (3, 1, *patch) and batch.targets[0].dtype == np.int16
        assert batch.targets[1].shape == (3, 1, *[p // 2 for p in patch])
        assert set(np.unique(batch.targets[0])) <= {0, 1, 2}
    assert any((b.targets[0][2] > 0).any() for b in batches)  # forced foreground sample


def test_a_batch_is_the_same_whenever_and_wherever_it_is_made():
    first, again = source([12, 16, 16]).batch(5), source([12, 16, 16]).batch(5)
    np.testing.assert_array_equal(first.data, again.data)
    np.testing.assert_array_equal(first.targets[0], again.targets[0])
    other = source([12, 16, 16]).batch(6)
    assert not np.array_equal(first.data, other.data)


def test_rows_made_by_separate_ranks_equal_the_global_batch():
    whole = source([12, 16, 16], batch_size=4).batch(3)
    parts = [source([12, 16, 16], batch_size=4, rows=batch_rows(4, 2, r)).batch(3) for r in range(2)]
    np.testing.assert_array_equal(np.concatenate([p.data for p in parts]), whole.data)
    np.testing.assert_array_equal(np.concatenate([p.targets[1] for p in parts]), whole.targets[1])
    assert batch_rows(7, 2, 0) == (0, 4) and batch_rows(7, 2, 1) == (4, 7)


def test_deep_supervision_scales_are_cumulative_strides_without_the_deepest():
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert deep_supervision_scales(strides, True) == ((1, 1, 1), (1, 2, 2), (2, 4, 4))
    assert deep_supervision_scales(strides, False) == ((1, 1, 1),)


def test_targets_are_downsampled_nearest_exact_like_pytorch():
    seg = np.arange(16, dtype=np.int16).reshape(1, 1, 16)
    targets = make_targets(seg, TargetSpec(scales=((1,), (2,), (4,))))
    assert targets[1][0, 0].tolist() == list(range(1, 16, 2))
    assert targets[2][0, 0].tolist() == [2, 6, 10, 14]
    torch = pytest.importorskip("torch")
    exact = torch.nn.functional.interpolate(torch.from_numpy(seg).float(), scale_factor=0.25, mode="nearest-exact")
    assert exact[0, 0].int().tolist() == targets[2][0, 0].tolist()


def test_region_targets_get_one_channel_per_region_and_one_for_ignored_voxels():
    seg = np.array([[[0, 1, 2, 3, 4]]], np.int16)
    targets = make_targets(seg, TargetSpec(scales=((1,),), regions=((1, 2, 3), (2, 3), (3,)), ignore_label=4))
    assert targets[0].dtype == np.uint8
    assert targets[0][0].tolist() == [[0, 1, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]


def test_masked_channels_are_zero_outside_the_crop_and_minus_one_becomes_background():
    spec = TargetSpec(scales=((1, 1, 1),), mask_channels=(0,))
    batch = source([14, 20, 20], channels=2, augment=False, spec=spec).batch(0)
    data, target = batch.data[:2], batch.targets[0][:2]  # unforced samples cover the whole case, no offset
    # x = 0 is outside the crop (-1) in every case; channel 0 is masked there, channel 1 is not
    assert (data[:, 0, :, :, 0] == 0).all() and (data[:, 0, :, :, 1] != 0).all()
    assert (data[:, 1, :, :, 0] != 0).all()
    assert (target[..., 0] == 0).all() and set(np.unique(target)) == {0, 1, 2}
