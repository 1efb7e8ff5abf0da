"""``Predictor``: in-memory prediction from a model folder (folds, TTA, 2D/3D, regions, cascade, postprocessing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers_inference import (
    blob_image,
    geometry,
    save_checkpoint,
    tiny_configuration,
    tiny_dataset_json,
    tiny_plans,
    write_model_folder,
)

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio.geometry import Geometry
from AutoSegNetLib.imageio.orientation import Reorientation
from AutoSegNetLib.inference import PYTORCH_DEFAULT_COMPUTE, REFERENCE_COMPUTE, ComputeSettings, Predictor, one_hot
from AutoSegNetLib.postprocessing import keep_largest_component
from AutoSegNetLib.utils.atomic import write_json

torch.set_num_threads(2)

CASES = {
    # name: (configuration kwargs, image shape (Z, Y, X), spacing (z, y, x), image_dim, channels)
    "3d": ({}, (10, 12, 9), (1.0, 1.0, 1.0), 3, 1),
    "3d_anisotropic": ({"spacing": [2.0, 1.0, 1.0], "patch": (4, 8, 8)}, (6, 11, 9), (3.0, 0.8, 1.0), 3, 1),
    "3d_two_channels": ({"channels": 2}, (9, 9, 10), (1.0, 1.0, 1.0), 3, 2),
    "2d_config_on_3d_image": ({"name": "2d", "ndim": 2, "patch": (8, 8)}, (3, 12, 10), (2.0, 1.0, 1.0), 3, 1),
    "2d_image": ({"name": "2d", "ndim": 2, "patch": (8, 8)}, (1, 13, 11), (999.0, 1.0, 1.0), 2, 1),
}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


def a_model(results: Path, name: str = "3d", folds=(0,), regions: bool = False, **overrides) -> Path:
    conf_kwargs, _, _, _, channels = CASES[name]
    configuration = tiny_configuration(**{**conf_kwargs, **overrides})
    return write_model_folder(results, configuration, tiny_dataset_json(channels, regions), folds=folds)


@pytest.mark.parametrize("name", list(CASES))
def test_prediction_is_on_the_input_grid_with_probabilities_that_sum_to_one(results: Path, name: str) -> None:
    _, shape, spacing, image_dim, channels = CASES[name]
    predictor = Predictor.from_model_folder(a_model(results, name), device="cpu")
    segmentation, probabilities = predictor.predict(blob_image(shape, channels), geometry(spacing, image_dim))
    assert segmentation.shape == shape and segmentation.dtype == np.uint8
    assert probabilities.shape == (3, *shape) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(segmentation, probabilities.argmax(0))


def test_prediction_leaves_the_callers_image_untouched(results: Path) -> None:
    image = blob_image()
    before = image.copy()
    Predictor.from_model_folder(a_model(results), device="cpu", tta=False).predict(image, geometry())
    np.testing.assert_array_equal(image, before)


def test_fold_ensemble_averages_the_probabilities_of_the_folds(results: Path) -> None:
    folder = a_model(results, folds=(0, 1))
    image, geo = blob_image(), geometry()
    both = Predictor.from_model_folder(folder, folds=None, device="cpu").predict(image, geo)[1]
    singles = [Predictor.from_model_folder(folder, folds=[f], device="cpu").predict(image, geo)[1] for f in (0, 1)]
    np.testing.assert_allclose(both, (singles[0] + singles[1]) / 2, atol=1e-6)


def test_mirroring_is_on_by_default_and_can_be_switched_off(results: Path) -> None:
    folder = a_model(results)
    image, geo = blob_image(), geometry()
    with_tta = Predictor.from_model_folder(folder, device="cpu")
    without = Predictor.from_model_folder(folder, device="cpu", tta=False)
    assert with_tta.mirror_axes == [0, 1, 2]
    assert not np.allclose(with_tta.predict(image, geo)[1], without.predict(image, geo)[1])


def test_averaging_logits_as_nnunet_changes_probabilities_slightly_and_sums_to_one(results: Path) -> None:
    folder = a_model(results, folds=(0, 1))
    image, geo = blob_image(), geometry()
    probability_average = Predictor.from_model_folder(folder, folds=None, device="cpu").predict(image, geo)
    logit_average = Predictor.from_model_folder(folder, folds=None, device="cpu", average="logits").predict(image, geo)
    np.testing.assert_allclose(logit_average[1].sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(logit_average[0], logit_average[1].argmax(0))
    difference = np.abs(logit_average[1] - probability_average[1])
    assert 0 < difference.max() < 0.2
    with pytest.raises(AutoSegNetError, match="Unknown average 'median'"):
        Predictor.from_model_folder(folder, device="cpu", average="median")


@pytest.mark.parametrize("compute", [
    ComputeSettings(), ComputeSettings(tile_batch=3, batch_mirrors=True, member_threads=2, onednn=False),
    ComputeSettings(batch_mirrors=False, member_threads=3, onednn=True, channels_last=False),
    PYTORCH_DEFAULT_COMPUTE,
])
def test_compute_settings_change_the_speed_not_the_result(results: Path, compute: ComputeSettings) -> None:
    folder = a_model(results, folds=(0, 1))
    image, geo = blob_image(), geometry()
    reference = Predictor.from_model_folder(folder, folds=None, device="cpu", compute=REFERENCE_COMPUTE)
    other = Predictor.from_model_folder(folder, folds=None, device="cpu", compute=compute)
    (expected_segmentation, expected), (segmentation, probabilities) = reference.predict(image, geo), other.predict(
        image, geo
    )
    np.testing.assert_array_equal(segmentation, expected_segmentation)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_members_side_by_side_compute_bitwise_what_one_pass_after_the_other_computes(results: Path) -> None:
    folder = a_model(results, folds=(0, 1))
    image, geo = blob_image(), geometry()
    side_by_side = Predictor.from_model_folder(folder, folds=None, device="cpu")  # 2 threads: 1 per member
    assert side_by_side.compute.member_threads == 2
    expected = side_by_side.predict(image, geo)[1]
    torch.set_num_threads(1)
    try:
        one_by_one = Predictor.from_model_folder(folder, folds=None, device="cpu", compute=REFERENCE_COMPUTE)
        np.testing.assert_array_equal(one_by_one.predict(image, geo)[1], expected)
    finally:
        torch.set_num_threads(2)


def test_a_checkpoint_that_allows_no_mirroring_predicts_the_same_with_and_without_tta(results: Path) -> None:
    configuration = tiny_configuration()
    folder = write_model_folder(results, configuration, tiny_dataset_json(), mirror_axes=None)
    image, geo = blob_image(), geometry()
    a = Predictor.from_model_folder(folder, device="cpu").predict(image, geo)[1]
    b = Predictor.from_model_folder(folder, device="cpu", tta=False).predict(image, geo)[1]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_regions_use_sigmoid_and_the_regions_class_order(results: Path) -> None:
    predictor = Predictor.from_model_folder(a_model(results, regions=True), device="cpu")
    segmentation, probabilities = predictor.predict(blob_image(), geometry())
    assert probabilities.shape == (2, 10, 12, 9)
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    expected = np.zeros(segmentation.shape, np.uint8)
    expected[probabilities[0] > 0.5] = 1
    expected[probabilities[1] > 0.5] = 2
    np.testing.assert_array_equal(segmentation, expected)


def test_uncertainty_maps_lie_in_zero_one_on_the_input_grid(results: Path) -> None:
    predictor = Predictor.from_model_folder(a_model(results, folds=(0, 1)), folds=None, device="cpu")
    for kind in ("entropy", "disagreement"):
        result = predictor.predict_case(blob_image(), geometry(), uncertainty=kind)
        assert result.uncertainty.shape == (10, 12, 9) and result.uncertainty.dtype == np.float32
        assert result.uncertainty.min() >= 0 and result.uncertainty.max() <= 1
        assert result.uncertainty.max() > 0


def test_cascade_feeds_the_one_hot_lowres_segmentation_as_extra_channels(results: Path) -> None:
    dataset_json = tiny_dataset_json()
    lowres = tiny_configuration("3d_lowres", next_stage="3d_cascade_fullres")
    cascade = tiny_configuration("3d_cascade_fullres", previous_stage="3d_lowres")
    plans = tiny_plans([lowres, cascade])
    write_model_folder(results, lowres, dataset_json, plans=plans, mirror_axes=None)
    folder = write_model_folder(results, cascade, dataset_json, plans=plans, mirror_axes=None, extra_inputs=2)
    predictor = Predictor.from_model_folder(folder, device="cpu")
    assert predictor.previous is not None and predictor.previous.model.configuration_name == "3d_lowres"
    seen = []
    predictor.networks[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].clone()))
    image, geo = blob_image((8, 8, 8)), geometry()  # one tile, no padding: the input is the preprocessed case
    segmentation, _ = predictor.predict(image, geo)
    lowres_segmentation = predictor.previous.predict(image, geo)[0]
    assert seen[0].shape == (1, 3, 8, 8, 8)
    np.testing.assert_array_equal(seen[0][0, 1:].numpy(), one_hot(lowres_segmentation, [1, 2]))
    assert segmentation.shape == (8, 8, 8)


def test_a_cascade_without_its_lowres_model_is_a_clear_error(results: Path) -> None:
    cascade = tiny_configuration("3d_cascade_fullres", previous_stage="3d_lowres")
    folder = write_model_folder(results, cascade, tiny_dataset_json(), extra_inputs=2)
    with pytest.raises(AutoSegNetError, match="Train 3d_lowres first"):
        Predictor.from_model_folder(folder, device="cpu")


def test_postprocessing_rules_in_the_model_folder_are_applied_to_the_label_map(results: Path) -> None:
    folder = write_model_folder(results, tiny_configuration(), tiny_dataset_json(), mirror_axes=None)
    image, geo = blob_image(), geometry()
    raw = Predictor.from_model_folder(folder, device="cpu").predict(image, geo)[0]
    rules = {"format": "autosegnet-postprocessing", "version": 1,
             "steps": [{"operation": "keep_largest_component", "labels": [1, 2]}]}
    write_json(folder / "postprocessing.json", rules)
    processed = Predictor.from_model_folder(folder, device="cpu").predict(image, geo)[0]
    np.testing.assert_array_equal(processed, keep_largest_component(raw, [1, 2]))
    unprocessed = Predictor.from_model_folder(folder, device="cpu", postprocess=False).predict(image, geo)[0]
    np.testing.assert_array_equal(unprocessed, raw)


def test_best_checkpoint_is_loaded_on_request_and_a_missing_final_one_says_so(results: Path) -> None:
    configuration = tiny_configuration()
    folder = write_model_folder(results, configuration, tiny_dataset_json(), checkpoints=("best",))
    Predictor.from_model_folder(folder, device="cpu", checkpoint="best")
    with pytest.raises(AutoSegNetError, match="checkpoint_final.pth"):
        Predictor.from_model_folder(folder, device="cpu")
    with pytest.raises(AutoSegNetError, match="fold_3"):
        Predictor.from_model_folder(folder, folds=[3], device="cpu", checkpoint="best")


def test_a_foreign_checkpoint_points_to_import_nnunet(results: Path) -> None:
    folder = a_model(results)
    torch.save({"network_weights": {}}, folder / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(AutoSegNetError, match="import-nnunet"):
        Predictor.from_model_folder(folder, device="cpu")


def test_weights_that_do_not_fit_the_plans_are_a_clear_error(results: Path) -> None:
    folder = a_model(results)
    other = tiny_configuration(channels=2)
    network = __import__("_helpers_inference").random_network(other, tiny_dataset_json(2))
    save_checkpoint(folder / "fold_0" / "checkpoint_final.pth", network, "3d_fullres", [0, 1, 2])
    with pytest.raises(AutoSegNetError, match="do not fit"):
        Predictor.from_model_folder(folder, device="cpu")


def test_unknown_device_and_bad_step_are_user_errors(results: Path) -> None:
    folder = a_model(results)
    with pytest.raises(AutoSegNetError, match="Unknown device"):
        Predictor.from_model_folder(folder, device="tpu")
    with pytest.raises(AutoSegNetError, match="step"):
        Predictor.from_model_folder(folder, device="cpu", step=0)


# ----- images stored in another orientation than the training cases ----------------------------------------
def with_training_orientation(folder: Path, code: str | None) -> Path:
    """Give a model folder a ``fingerprint.json`` whose training cases all have orientation ``code``."""
    from _helpers_planning import uniform_fingerprint

    fingerprint = uniform_fingerprint(3, (1.0, 1.0, 1.0), (10, 12, 9))
    for case in fingerprint.cases:
        case.orientation = code
    fingerprint.save(folder / "fingerprint.json")
    return folder


def test_an_image_in_another_orientation_is_predicted_as_stored_with_a_warning(results: Path, caplog) -> None:
    folder = with_training_orientation(a_model(results), "LPS")
    predictor = Predictor.from_model_folder(folder, device="cpu", tta=False)
    image = blob_image()
    rotated = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0, 0, -1, 1, 0, 0, 0, -1, 0))  # code "PIR"
    result = predictor.predict_case(image, rotated, case_name="caseA")
    assert len(result.warnings) == 1
    assert "'caseA' is stored in orientation PIR" in result.warnings[0] and "--reorient" in result.warnings[0]
    assert "--reorient" in caplog.text
    plain = predictor.predict_case(image, geometry())
    assert plain.warnings == []
    np.testing.assert_array_equal(result.probabilities, plain.probabilities)


def test_reorient_predicts_in_the_training_orientation_and_turns_the_result_back(results: Path) -> None:
    folder = with_training_orientation(a_model(results), "LPS")
    image = blob_image()
    rotated = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0, 0, -1, 1, 0, 0, 0, -1, 0))
    turned = Predictor.from_model_folder(folder, device="cpu", tta=False, reorient=True)
    result = turned.predict_case(image, rotated, uncertainty="entropy")
    assert result.warnings == [] and result.segmentation.shape == image.shape[1:]
    assert result.segmentation.flags.c_contiguous and result.uncertainty.shape == image.shape[1:]
    # reference: reorient by hand, predict the LPS array, turn the result back
    reorientation = Reorientation.between("PIR", "LPS")
    reference = turned.predict_case(reorientation.apply(image), reorientation.geometry(rotated, image.shape),
                                    uncertainty="entropy")
    np.testing.assert_array_equal(result.segmentation, reorientation.invert(reference.segmentation))
    np.testing.assert_allclose(result.probabilities, reorientation.invert(reference.probabilities), atol=1e-6)
    np.testing.assert_allclose(result.uncertainty, reorientation.invert(reference.uncertainty), atol=1e-6)
    as_stored = Predictor.from_model_folder(folder, device="cpu", tta=False).predict_case(image, rotated)
    assert not np.allclose(result.probabilities, as_stored.probabilities, atol=1e-3)


def test_no_orientation_check_without_a_recorded_training_orientation_or_for_2d(results: Path) -> None:
    rotated = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0, 0, -1, 1, 0, 0, 0, -1, 0))
    unknown = Predictor.from_model_folder(a_model(results), device="cpu", tta=False)
    assert unknown.training_orientation is None
    assert unknown.predict_case(blob_image(), rotated).warnings == []
    mixed = with_training_orientation(a_model(results), None)
    assert Predictor.from_model_folder(mixed, device="cpu").training_orientation is None
    folder_2d = with_training_orientation(a_model(results / "2d", "2d_image"), "LPS")
    flipped_2d = Geometry((999.0, 1.0, 1.0), (0.0, 0.0, 0.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1), image_dim=2)
    predictor_2d = Predictor.from_model_folder(folder_2d, device="cpu", tta=False)
    assert predictor_2d.predict_case(blob_image((1, 13, 11)), flipped_2d).warnings == []
