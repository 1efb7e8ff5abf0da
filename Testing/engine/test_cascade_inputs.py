"""The cascade's inputs, piece by piece: augmentation of the lowres channels (exact against scipy's binary
morphology), the label-map stack the sampler reads, the lowres prediction brought onto the cascade's grid exactly
as prediction does it, and the refusal that names the 3d_lowres folds to train."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from AutoSegNetLib.dataset import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry
from AutoSegNetLib.inference.labels import cascade_label_values, one_hot
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans
from AutoSegNetLib.preprocessing.case import preprocess_case
from AutoSegNetLib.training.cascade import (
    ChannelStack,
    PreviousStage,
    load_stage_prediction,
    raw_prediction_to_stage,
    require_stage_predictions,
    save_stage_prediction,
)
from AutoSegNetLib.training.cascade_augmentation import (
    OPERATIONS,
    PreviousStageChannels,
    RandomBinaryOperator,
    RemoveRandomComponent,
    morphology,
)


def integer_ball(radius: float, ndim: int) -> np.ndarray:
    """Every integer offset within ``radius`` voxels."""
    r = int(np.floor(radius))
    grid = np.mgrid[(slice(-r, r + 1),) * ndim]
    return (grid**2).sum(0) <= radius * radius


def scipy_reference(mask: np.ndarray, operation: str, radius: float) -> np.ndarray:
    ball = integer_ball(radius, mask.ndim)

    def dilate(m):
        return ndimage.binary_dilation(m, ball)

    def erode(m):
        return ndimage.binary_erosion(m, ball, border_value=1)

    return {"dilation": dilate, "erosion": erode, "closing": lambda m: erode(dilate(m)),
            "opening": lambda m: dilate(erode(m))}[operation](mask)


@pytest.fixture
def a_mask_3d() -> np.ndarray:
    """Two boxes (one touching the border), a cut through the larger one and a small blob."""
    mask = np.zeros((24, 26, 22), bool)
    mask[4:16, 6:20, 3:18] = True
    mask[9:11, :, 9] = False
    mask[0:3, 0:4, 15:22] = True
    mask[20:22, 20:23, 2:4] = True
    return mask


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("radius", [1.0, 1.5, 2.7, 4.2])
def test_morphology_equals_scipys_with_a_ball_of_integer_offsets_in_3d(a_mask_3d, operation, radius):
    np.testing.assert_array_equal(morphology(a_mask_3d, operation, radius),
                                  scipy_reference(a_mask_3d, operation, radius))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_morphology_equals_scipys_in_2d(a_mask_3d, operation):
    mask = a_mask_3d[10]
    np.testing.assert_array_equal(morphology(mask, operation, 2.3), scipy_reference(mask, operation, 2.3))


def test_the_binary_operator_keeps_the_channels_one_hot():
    seg = np.zeros((20, 20, 20), np.int16)
    seg[5:15, 5:15, 5:15] = 2
    seg[8:12, 8:12, 8:12] = 1
    channels = one_hot(seg, [1, 2])
    out = RandomBinaryOperator().apply(channels.copy(), [(0, "dilation", 3.0)])
    assert out[0].sum() > channels[0].sum()
    assert out.sum(0).max() == 1  # no voxel in two channels
    np.testing.assert_array_equal(out[1], channels[1] * (1 - out[0]))


def test_component_removal_takes_one_small_component_and_never_a_large_one():
    channels = np.zeros((1, 20, 20, 20), np.float32)
    channels[0, 0:10, 0:20, 0:20] = 1  # 4000 voxels = 50 % of the patch: never removed
    channels[0, 15:17, 15:17, 15:17] = 1
    channels[0, 12:13, 2:4, 2:4] = 1
    small = [(15, 15, 15), (12, 2, 2)]
    for u, removed in ((0.1, small[1]), (0.9, small[0])):  # components are numbered in scan order
        out = RemoveRandomComponent().apply(channels.copy(), [(0, u)])
        assert out[0, 0:10].all() and out[0][removed] == 0
        assert out.sum() == channels.sum() - (1 * 2 * 2 if removed == small[1] else 8)


def test_the_lowres_channels_are_a_pure_function_of_the_seed_and_plain_one_hot_without_augmentation():
    rng = np.random.default_rng(3)
    seg = rng.integers(0, 3, (16, 16, 16)).astype(np.int16)
    always = PreviousStageChannels((1, 2), augment=True, binary_operator=RandomBinaryOperator(p_per_sample=1.0),
                                   remove_component=RemoveRandomComponent(p_per_sample=1.0))
    first = always(seg, np.random.default_rng(7))
    np.testing.assert_array_equal(first, always(seg, np.random.default_rng(7)))
    assert not np.array_equal(first, one_hot(seg, [1, 2]))
    np.testing.assert_array_equal(PreviousStageChannels((1, 2))(seg, np.random.default_rng(7)), one_hot(seg, [1, 2]))


def test_the_cascade_gets_one_channel_per_label_value_without_background_and_ignore():
    regions = DatasetJson(channel_names={"0": "CT"}, labels={"background": 0, "a": [1, 2], "b": 2, "ignore": 3},
                          num_training=1, file_ending=".nii.gz", regions_class_order=[1, 2])
    assert cascade_label_values(regions) == [1, 2]


def test_the_label_stack_reads_the_same_patches_as_the_concatenated_arrays():
    labels = np.arange(5 * 6 * 7).reshape(1, 5, 6, 7) % 3
    lowres = np.arange(5 * 6 * 7).reshape(1, 5, 6, 7) % 2
    stack, whole = ChannelStack([labels, lowres]), np.concatenate([labels, lowres])
    assert stack.shape == (2, 5, 6, 7)
    index = (slice(None), slice(1, 4), slice(0, 6), slice(2, 5))
    np.testing.assert_array_equal(stack[index], whole[index])
    np.testing.assert_array_equal(stack[:, 2], whole[:, 2])
    with pytest.raises(IndexError):
        stack[1]


# ----- the lowres prediction on the cascade's grid ------------------------------------------------------------
def anisotropic_plans() -> tuple[Plans, ConfigurationPlan, DatasetJson]:
    """Transposed axes (x first), a coarse target spacing on one axis and a fine one on the others."""
    conf = ConfigurationPlan(
        name="3d_cascade_fullres", data_identifier="p_3d_fullres", spacing=[3.0, 0.8, 0.9], patch_size=[8, 8, 8],
        batch_size=2, median_image_size=[10.0, 20.0, 20.0], normalization_schemes=["ZScoreNormalization"],
        use_mask_for_norm=[False], batch_dice=False, network={}, previous_stage="3d_lowres",
    )
    plans = Plans(dataset_name="Dataset001_X", plans_name="p", planner="test", transpose_forward=[2, 0, 1],
                  transpose_backward=[1, 2, 0], original_median_spacing=[3.0, 0.8, 0.9],
                  original_median_shape=[10.0, 20.0, 20.0], image_reader_writer="SimpleITKIO",
                  foreground_intensity_properties={}, configurations={conf.name: conf})
    dataset_json = DatasetJson(channel_names={"0": "MRI"}, labels={"background": 0, "a": 1, "b": 2},
                               num_training=1, file_ending=".nii.gz")
    return plans, conf, dataset_json


def test_a_raw_lowres_prediction_lands_on_the_cascade_grid_exactly_as_prediction_puts_it_there():
    plans, conf, dataset_json = anisotropic_plans()
    rng = np.random.default_rng(0)
    image = rng.normal(1, 0.1, (1, 18, 21, 9)).astype(np.float32)
    image[:, :2] = 0
    image[:, :, -3:] = 0
    image[:, 5:9, 0:4, 0:3] = 0  # inside the box but outside the non-zero mask
    lowres = np.zeros((18, 21, 9), np.int16)
    lowres[3:14, 2:12, 1:8] = 2
    lowres[6:10, 4:9, 2:6] = 1
    geometry = Geometry(spacing=(1.1, 1.0, 2.9))
    _, expected, properties = preprocess_case(image, lowres, geometry, plans, conf, dataset_json)
    stage = raw_prediction_to_stage(lowres, properties, plans, conf, image)
    np.testing.assert_array_equal(stage, expected[0])
    without_image = raw_prediction_to_stage(lowres, properties, plans, conf)
    np.testing.assert_array_equal(one_hot(without_image, [1, 2]), one_hot(expected[0], [1, 2]))
    with pytest.raises(AutoSegNetError, match="not a prediction of this case"):
        raw_prediction_to_stage(lowres[:-1], properties, plans, conf)


def test_a_stored_prediction_of_another_preprocessing_names_the_fold_to_validate_again(tmp_path):
    save_stage_prediction(tmp_path, "case_000", np.zeros((4, 5, 6), np.int16), "3")
    assert load_stage_prediction(tmp_path, "case_000", (4, 5, 6)).shape == (4, 5, 6)
    with pytest.raises(AutoSegNetError, match="3d_lowres 3 --validate-only"):
        load_stage_prediction(tmp_path, "case_000", (4, 5, 7))


# ----- may the cascade start? ---------------------------------------------------------------------------------
def test_the_refusal_names_the_lowres_folds_holding_out_the_missing_cases_and_cases_in_no_fold(tmp_path):
    previous = PreviousStage("3d_lowres", tmp_path, tmp_path / "predictions", (1, 2))
    splits = [{"train": ["b", "c"], "val": ["a"]}, {"train": ["a", "c"], "val": ["b"]},
              {"train": ["a", "b"], "val": ["c"]}]
    save_stage_prediction(previous.predictions, "a", np.zeros((2, 2, 2), np.int16), "0")
    with pytest.raises(AutoSegNetError) as refused:
        require_stage_predictions(previous, ["a", "b", "c", "d"], splits, "Dataset001_X", "3d_cascade_fullres", "0")
    message = str(refused.value)
    assert "Missing for 3 of 4 cases (b, c, d)" in message
    assert "Train 3d_lowres folds 1, 2 first" in message and "`autosegnet train Dataset001_X 3d_lowres 2`" in message
    assert "Cases d are in no fold's 'val' list" in message
    for case in ("b", "c", "d"):
        save_stage_prediction(previous.predictions, case, np.zeros((2, 2, 2), np.int16), "1")
    require_stage_predictions(previous, ["a", "b", "c", "d"], splits, "Dataset001_X", "3d_cascade_fullres", "all")
