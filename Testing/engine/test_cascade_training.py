"""Cascade training end to end on a tiny synthetic dataset that gets a cascade plan (CPU, seconds): plan ->
preprocess 3d_lowres + 3d_cascade_fullres -> 3d_lowres folds (cross-validation predictions) -> cascade folds ->
predict, refusals, --continue, --pretrained, validation without raw images, find-best, export / install."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers_training import InterruptAt

from AutoSegNetLib.cli import main
from AutoSegNetLib.dataset import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, io_for
from AutoSegNetLib.inference import Predictor
from AutoSegNetLib.inference.compute import ComputeSettings
from AutoSegNetLib.inference.labels import one_hot
from AutoSegNetLib.layout import PREDICTED_NEXT_STAGE
from AutoSegNetLib.planning import plan_experiment
from AutoSegNetLib.planning.planners import ExperimentPlanner, MemoryReference
from AutoSegNetLib.preprocessing.case import preprocess_case
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.training import TrainingConfig, train
from AutoSegNetLib.training.cascade import stage_prediction_record
from AutoSegNetLib.training.checkpoint import load_checkpoint
from AutoSegNetLib.training.components import make_batch_sources
from AutoSegNetLib.training.fold_setup import prepare_fold
from AutoSegNetLib.training.sampling import box_bounds, crop_padded
from AutoSegNetLib.utils.atomic import read_json
from AutoSegNetLib.workspace import Workspace

DATASET = "Dataset001_Cascade"
LOWRES = "AutoSegNet__nnUNetPlans__3d_lowres"
CASCADE = "AutoSegNet__nnUNetPlans__3d_cascade_fullres"
CASES = [f"case_{i:03d}" for i in range(4)]
#: Predicted after training (with both spacings; copies of training images, this only checks the path).
TEST_CASES = ["case_000", "case_003"]
#: Two folds (a hand-written splits file) keep the number of 3d_lowres trainings down.
SPLITS = [{"train": ["case_002", "case_003"], "val": ["case_000", "case_001"]},
          {"train": ["case_000", "case_001"], "val": ["case_002", "case_003"]}]
#: Several tiles per forward pass: with a network this small the time goes into the calls, not the convolutions.
PREDICT_FLAGS = ["--device", "cpu", "--no-tta", "--tile-batch", "8"]
TRAIN_FLAGS = ["--epochs", "2", "--iterations", "2", "--val-iterations", "1", "--device", "cpu", "--num-workers", "0"]
#: The TrainingConfig those flags make.
CONFIG = TrainingConfig(epochs=2, iterations_per_epoch=2, val_iterations=1, device="cpu", num_workers=0)
#: A planner whose tiny memory target leaves a patch far below a quarter of the 40^3 images: a cascade is planned.
TINY_CASCADE_PLANNER = ExperimentPlanner(name="tiny-cascade", reference=MemoryReference(2e5, 2e5 / 6, 8.0),
                                         base_features=4, max_features_3d=16)


def write_raw_dataset(workspace: Workspace) -> Path:
    """4 cases of 40^3 voxels: a sphere (label 1) in a shell (label 2); zero slabs at two borders (a non-trivial
    crop) and two spacings (z 1.0 and 1.25 mm, so every case is resampled)."""
    raw = workspace.raw / DATASET
    io = io_for(".nii.gz")
    rng = np.random.default_rng(0)
    zz, yy, xx = np.ogrid[:40, :40, :40]
    for index, case in enumerate(CASES):
        centre = rng.integers(14, 26, 3)
        distance = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
        seg = np.zeros((40, 40, 40), np.uint8)
        seg[distance < 9] = 2
        seg[distance < 5] = 1
        image = np.where(seg == 1, 3.0, np.where(seg == 2, 2.0, 1.0)) + rng.normal(0, 0.2, seg.shape)
        image[:3] = 0
        image[:, :, -2:] = 0
        geometry = Geometry(spacing=(1.0, 1.0, 1.0 + 0.25 * (index % 2)))
        io.write_image(image.astype(np.float32), raw / "imagesTr" / f"{case}_0000.nii.gz", geometry)
        io.write_seg(seg, raw / "labelsTr" / f"{case}.nii.gz", geometry)
    DatasetJson(channel_names={"0": "MRI"}, labels={"background": 0, "inner": 1, "outer": 2}, num_training=4,
                file_ending=".nii.gz").save(raw / "dataset.json")
    return raw


def cli(workspace: Workspace, *args: str) -> int:
    return main([*args, "--workspace", str(workspace.raw.parent)])


@dataclasses.dataclass
class CascadeRun:
    """What the module fixture did: the workspace, the errors of the refused steps and the seconds per step."""

    workspace: Workspace
    refused_before_lowres: str
    refused_all_after_one_lowres_fold: str
    seconds: dict[str, float]

    @property
    def results(self) -> Path:
        return self.workspace.results / DATASET


@pytest.fixture(scope="module")
def a_cascade(tmp_path_factory) -> CascadeRun:
    """The whole path, timed: plan, preprocess, refused cascade, 3d_lowres folds 0 and 1, cascade fold 0, predict
    two cases with -c 3d_cascade_fullres (which runs 3d_lowres fold 0 first)."""
    workspace = Workspace.at(tmp_path_factory.mktemp("cascade") / "ws").create()
    raw = write_raw_dataset(workspace)
    seconds: dict[str, float] = {}

    def timed(name: str, step) -> object:
        start = time.perf_counter()
        result = step()
        seconds[name] = round(time.perf_counter() - start, 2)
        return result

    assert timed("fingerprint", lambda: cli(workspace, "fingerprint", "1")) == 0
    timed("plan", lambda: plan_experiment(workspace, "1", TINY_CASCADE_PLANNER))
    assert timed("preprocess", lambda: cli(workspace, "preprocess", "1", "-c", "3d_lowres", "3d_cascade_fullres",
                                           "-np", "0")) == 0
    (workspace.preprocessed / DATASET / "splits_final.json").write_text(json.dumps(SPLITS))
    with pytest.raises(AutoSegNetError) as before:
        prepare_fold(workspace, "1", "3d_cascade_fullres", 0)
    assert timed("lowres fold 0", lambda: cli(workspace, "train", "1", "3d_lowres", "0", *TRAIN_FLAGS)) == 0
    with pytest.raises(AutoSegNetError) as fold_all:
        prepare_fold(workspace, "1", "3d_cascade_fullres", "all")
    assert timed("lowres fold 1", lambda: cli(workspace, "train", "1", "3d_lowres", "1", *TRAIN_FLAGS)) == 0
    assert timed("cascade fold 0", lambda: cli(workspace, "train", "1", "3d_cascade_fullres", "0", *TRAIN_FLAGS)) == 0
    test_images = raw / "imagesTs"
    test_images.mkdir()
    for case in TEST_CASES:
        (test_images / f"{case}_0000.nii.gz").symlink_to(raw / "imagesTr" / f"{case}_0000.nii.gz")
    assert timed("predict 2 cases", lambda: cli(workspace, "predict", "-i", str(test_images), "-o",
                                                str(workspace.raw.parent / "predicted"), "-d", "1", "-c",
                                                "3d_cascade_fullres", "-f", "0", *PREDICT_FLAGS)) == 0
    seconds["total"] = round(sum(seconds.values()), 2)
    return CascadeRun(workspace, str(before.value), str(fold_all.value), seconds)


# ----- the path ---------------------------------------------------------------------------------------------
def test_the_plan_of_the_synthetic_dataset_has_a_cascade(a_cascade):
    plans = read_json(a_cascade.workspace.preprocessed / DATASET / "plans.json")["configurations"]
    assert plans["3d_cascade_fullres"]["previous_stage"] == "3d_lowres"
    assert plans["3d_lowres"]["next_stage"] == "3d_cascade_fullres"


def test_the_whole_cascade_path_runs_from_plan_to_predict(a_cascade):
    predicted = a_cascade.workspace.raw.parent / "predicted"
    assert sorted(p.name for p in predicted.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in TEST_CASES]
    summary = read_json(a_cascade.results / CASCADE / "fold_0" / "validation" / "summary.json")
    assert summary["space"] == "original" and summary["configuration"] == "3d_cascade_fullres"
    checkpoint = load_checkpoint(a_cascade.results / CASCADE / "fold_0" / "checkpoint_final.pth")
    first_conv = next(v for k, v in checkpoint["network_weights"].items() if k.endswith("weight") and v.ndim == 5)
    assert first_conv.shape[1] == 1 + 2  # the image and one channel per foreground label of the lowres result
    print(f"cascade path timings (s): {a_cascade.seconds}")  # seen with pytest -s


def test_a_cascade_fold_is_refused_until_the_lowres_folds_have_predicted_their_held_out_cases(a_cascade):
    message = a_cascade.refused_before_lowres
    assert "Missing for 4 of 4 cases" in message
    assert f"`autosegnet train {DATASET} 3d_lowres 0`" in message
    assert f"`autosegnet train {DATASET} 3d_lowres 1`" in message
    assert "--validate-only" in message


def test_cascade_fold_all_needs_the_cross_validation_predictions_of_every_lowres_fold(a_cascade):
    message = a_cascade.refused_all_after_one_lowres_fold
    assert "Fold all of 3d_cascade_fullres trains on every case" in message
    assert "'all' model cannot stand in" in message
    assert f"`autosegnet train {DATASET} 3d_lowres 1`" in message and "3d_lowres 0`" not in message


def test_each_case_is_predicted_by_the_lowres_fold_that_held_it_out(a_cascade):
    folder = a_cascade.results / LOWRES / PREDICTED_NEXT_STAGE / "3d_cascade_fullres"
    held_out_by = {case: str(k) for k, fold in enumerate(SPLITS) for case in fold["val"]}
    assert {c: stage_prediction_record(folder, c)["fold"] for c in CASES} == held_out_by


def test_lowres_fold_all_feeds_no_cascade(a_cascade):
    assert prepare_fold(a_cascade.workspace, "1", "3d_lowres", "all").next_stage is None
    assert prepare_fold(a_cascade.workspace, "1", "3d_lowres", 0).next_stage.configuration == "3d_cascade_fullres"


def test_the_extra_input_channels_are_the_one_hot_lowres_cv_prediction_not_the_ground_truth(a_cascade):
    workspace, case = a_cascade.workspace, "case_003"  # a training case of cascade fold 0, held out by lowres fold 1
    setup = prepare_fold(workspace, "1", "3d_cascade_fullres", 0)
    assert case in setup.train_cases
    # what prediction does with a lowres segmentation: preprocess it with the image for the cascade stage
    io = io_for(".nii.gz")
    image, geometry = io.read_images([workspace.raw / DATASET / "imagesTr" / f"{case}_0000.nii.gz"])
    lowres, _ = io.read_seg(a_cascade.results / LOWRES / "fold_1" / "validation" / f"{case}.nii.gz")
    truth, _ = io.read_seg(workspace.raw / DATASET / "labelsTr" / f"{case}.nii.gz")
    data, expected, _ = preprocess_case(image, lowres, geometry, setup.plans, setup.plan, setup.dataset_json)
    _, reference, _ = preprocess_case(image, truth, geometry, setup.plans, setup.plan, setup.dataset_json)
    # a patch covering the whole case (rounded up to the network's total stride), no augmentation
    stride = np.prod(setup.plan.network["strides"], axis=0)
    patch = [int(-(-n // k) * k) for n, k in zip(data.shape[1:], stride)]
    config = CONFIG.replace(augmentation=False, patch_size=patch, batch_size=1)
    sources, _ = make_batch_sources(dataclasses.replace(setup, train_cases=[case]), config)
    batch = sources["train"].batch(0)
    lower = _where(batch.data[0, :1], data, patch)
    channels = batch.data[0, 1:]
    np.testing.assert_array_equal(channels, crop_padded(one_hot(expected[0], [1, 2]), lower, patch, 0))
    assert not np.array_equal(channels, crop_padded(one_hot(reference[0], [1, 2]), lower, patch, 0))
    assert channels.sum() > 1000  # the lowres fold predicts foreground here: the input is not empty
    np.testing.assert_array_equal(batch.targets[0][0, 0], np.maximum(crop_padded(reference, lower, patch, -1)[0], 0))


def _where(patch_data: np.ndarray, data: np.ndarray, patch: list[int]) -> list[int]:
    """The lower corner at which the sampler cut ``patch_data`` ``(C, *P)`` from ``data``."""
    lows, highs = box_bounds(data.shape[1:], patch, [0, 0, 0])
    for lower in itertools.product(*(range(lo, hi + 1) for lo, hi in zip(lows, highs))):
        if np.allclose(crop_padded(data, list(lower), patch, 0), patch_data, atol=1e-5):
            return list(lower)
    raise AssertionError("the image channel of the sample is not a crop of the preprocessed case")


# ----- resume, fine-tune, validate ----------------------------------------------------------------------------

def _copy(run: CascadeRun, target: Path) -> Workspace:
    shutil.copytree(run.workspace.raw.parent, target, symlinks=True)
    return Workspace.at(target)


def test_continue_resumes_a_cascade_exactly_where_it_stopped(a_cascade, tmp_path):
    workspace = _copy(a_cascade, tmp_path / "ws")
    shutil.rmtree(workspace.results / DATASET / CASCADE / "fold_0")
    config = CONFIG.replace(iteration_event_every=1)
    folder = train(workspace, "1", "3d_cascade_fullres", 0, config, InterruptAt(3))  # epoch 2, iteration 1
    assert not (folder / "fold_0" / "checkpoint_final.pth").exists()
    assert load_checkpoint(folder / "fold_0" / "checkpoint_latest.pth")["log"]["in_progress"]["iteration"] == 1
    assert cli(workspace, "train", "1", "3d_cascade_fullres", "0", "--continue") == 0

    def losses(model_folder: Path) -> list[tuple[float, float]]:
        epochs = read_json(model_folder / "fold_0" / "progress.json")["epochs"]
        return [(e["train_loss"], e["val_loss"]) for e in epochs]

    straight = a_cascade.results / CASCADE
    assert losses(folder) == losses(straight)
    resumed = load_checkpoint(folder / "fold_0" / "checkpoint_final.pth")["network_weights"]
    for key, value in load_checkpoint(straight / "fold_0" / "checkpoint_final.pth")["network_weights"].items():
        assert torch.equal(value, resumed[key]), key


def test_a_cascade_fine_tunes_from_a_cascade_checkpoint_but_not_from_a_lowres_one(a_cascade, tmp_path):
    workspace = _copy(a_cascade, tmp_path / "ws")
    lowres = a_cascade.results / LOWRES / "fold_0" / "checkpoint_final.pth"
    with pytest.raises(AutoSegNetError, match="takes 1 input channel.*this one 3"):
        train(workspace, "1", "3d_cascade_fullres", 1, CONFIG, ProgressReporter("none"), pretrained=lowres)
    cascade = a_cascade.results / CASCADE / "fold_0" / "checkpoint_final.pth"
    folder = train(workspace, "1", "3d_cascade_fullres", 1, CONFIG.replace(epochs=1), ProgressReporter("none"),
                   pretrained=cascade)
    assert (folder / "fold_1" / "checkpoint_final.pth").is_file()


def test_without_raw_images_both_stages_validate_in_the_preprocessed_space(a_cascade, tmp_path):
    workspace = _copy(a_cascade, tmp_path / "ws")
    shutil.rmtree(workspace.raw / DATASET / "imagesTr")
    stored = workspace.results / DATASET / LOWRES / PREDICTED_NEXT_STAGE / "3d_cascade_fullres"
    for path in stored.glob("case_00[23].*"):  # the cases lowres fold 1 holds out
        path.unlink()
    with pytest.raises(AutoSegNetError, match="Missing for 2 of 4 cases.* 3d_lowres 1`"):
        prepare_fold(workspace, "1", "3d_cascade_fullres", 0)
    assert cli(workspace, "train", "1", "3d_lowres", "1", "--validate-only", "--device", "cpu") == 0
    assert {c: stage_prediction_record(stored, c)["fold"] for c in CASES} == {
        "case_000": "0", "case_001": "0", "case_002": "1", "case_003": "1"}
    assert cli(workspace, "train", "1", "3d_cascade_fullres", "0", "--validate-only", "--device", "cpu") == 0
    summary = read_json(workspace.results / DATASET / CASCADE / "fold_0" / "validation" / "summary.json")
    assert summary["space"] == "preprocessed" and set(summary["mean"]) == {"1", "2"}


# ----- after training -----------------------------------------------------------------------------------------
def test_find_best_compares_the_cascade_with_the_lowres_stage(a_cascade, tmp_path):
    workspace = _copy(a_cascade, tmp_path / "ws")
    assert cli(workspace, "find-best", "-d", "1", "-f", "0") == 0
    information = read_json(workspace.results / DATASET / "inference_information.json")
    names = {entry["name"] for entry in information["ranking"]}
    assert {"3d_lowres", "3d_cascade_fullres"} <= names
    assert any(name.startswith("ensemble__") and "3d_cascade_fullres" in name for name in names)


def test_export_model_zips_both_stages_and_the_installed_cascade_predicts_alike(a_cascade, tmp_path):
    archive = tmp_path / "cascade.zip"
    assert cli(a_cascade.workspace, "export-model", "-d", "1", "-c", "3d_cascade_fullres", "-o", str(archive)) == 0
    with zipfile.ZipFile(archive) as opened:
        names = set(opened.namelist())
    assert {f"{CASCADE}/fold_0/checkpoint_final.pth", f"{LOWRES}/fold_0/checkpoint_final.pth"} <= names
    assert f"{LOWRES}/fold_1/checkpoint_final.pth" not in names  # the lowres stage comes with the same folds
    assert not any(PREDICTED_NEXT_STAGE in n for n in names)
    target = Workspace.at(tmp_path / "target").create()
    assert cli(target, "install-model", str(archive)) == 0
    images = a_cascade.workspace.raw / DATASET / "imagesTs"
    assert cli(target, "predict", "-i", str(images), "-o", str(tmp_path / "out"), "-d", "1", "-c", "3d_cascade_fullres",
               "-f", "0", *PREDICT_FLAGS) == 0
    io = io_for(".nii.gz")
    for case in TEST_CASES:
        mine, _ = io.read_seg(tmp_path / "out" / f"{case}.nii.gz")
        theirs, _ = io.read_seg(a_cascade.workspace.raw.parent / "predicted" / f"{case}.nii.gz")
        np.testing.assert_array_equal(mine, theirs)
    # the lowres stage can also come from another model folder
    predictor = Predictor.from_model_folder(target.results / DATASET / CASCADE, folds=[0], device="cpu", tta=False,
                                            previous_stage_folder=a_cascade.results / LOWRES,
                                            compute=ComputeSettings(tile_batch=8))
    assert predictor.previous.model.folder == a_cascade.results / LOWRES
    image, geometry = io.read_images([images / "case_000_0000.nii.gz"])
    expected, _ = io.read_seg(tmp_path / "out" / "case_000.nii.gz")
    np.testing.assert_array_equal(predictor.predict(image, geometry)[0], expected)
    assert cli(target, "predict", "-i", str(images), "-o", str(tmp_path / "out2"), "--model-folder",
               str(target.results / DATASET / CASCADE), "--lowres-model-folder", str(a_cascade.results / LOWRES),
               "-f", "0", *PREDICT_FLAGS) == 0  # the same from the command line
    for case in TEST_CASES:
        np.testing.assert_array_equal(io.read_seg(tmp_path / "out2" / f"{case}.nii.gz")[0],
                                      io.read_seg(tmp_path / "out" / f"{case}.nii.gz")[0])
