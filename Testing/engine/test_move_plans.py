"""``move-plans``: the plans of a source dataset given to a target dataset (nnU-Net's
``nnUNetv2_move_plans_between_datasets``), so that a model trained on the source is fine-tuned on the target."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers_training import synthetic_case, tiny_config, tiny_plans

from AutoSegNetLib.cli import main
from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, io_for
from AutoSegNetLib.models.move_plans import default_plans_name, move_plans, moved_plans
from AutoSegNetLib.planning.plans import Plans
from AutoSegNetLib.preprocessing.preprocess_dataset import preprocess_dataset
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.training import train
from AutoSegNetLib.training.checkpoint import load_checkpoint
from AutoSegNetLib.workspace import Workspace

torch.set_num_threads(2)
SOURCE, TARGET = "Dataset001_Alpha", "Dataset002_Beta"
MOVED = "AutoSegNetPlansFromDataset001"


def a_raw_dataset(workspace: Workspace, name: str, labels: dict, n_cases: int, channels: int = 1, seed: int = 0,
                  ending: str = ".nii.gz") -> Path:
    """``raw/<name>`` with ``n_cases`` synthetic NIfTI cases (16 x 20 x 20 voxels, one box per label)."""
    raw = workspace.raw / name
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    DatasetJson(channel_names={str(c): f"MR{c}" for c in range(channels)}, labels=labels, num_training=n_cases,
                file_ending=ending).save(raw / "dataset.json")
    io, rng = io_for(ending), np.random.default_rng(seed)
    for index in range(n_cases):
        image, seg = synthetic_case(rng, (16, 20, 20), channels, len(labels) - 1, with_outside=False)
        for channel in range(channels):
            io.write_image(image[channel] + 3.0, raw / "imagesTr" / f"case_{index:03d}_{channel:04d}{ending}",
                           Geometry(spacing=(1.0, 1.0, 1.0)))
        io.write_seg(seg[0].astype(np.uint8), raw / "labelsTr" / f"case_{index:03d}{ending}", Geometry((1.0,) * 3))
    return raw


def source_plans(name: str = SOURCE, normalization: str = "ZScoreNormalization") -> Plans:
    plans = tiny_plans([16, 16, 16])
    plans.dataset_name = name
    plans.configurations["3d_fullres"].normalization_schemes = [normalization]
    plans.foreground_intensity_properties = {"0": {"mean": 40.0, "std": 300.0, "percentile_00_5": -1000.0,
                                                   "percentile_99_5": 1500.0}}
    return plans


@pytest.fixture
def two_datasets(tmp_path: Path) -> Workspace:
    """Alpha (two labels, planned) and Beta (one label, not planned) in one workspace."""
    workspace = Workspace.at(tmp_path / "ws").create()
    a_raw_dataset(workspace, SOURCE, {"background": 0, "first": 1, "second": 2}, n_cases=3)
    a_raw_dataset(workspace, TARGET, {"background": 0, "tumour": 1}, n_cases=5, seed=1)
    source_plans().save(workspace.preprocessed / SOURCE / "plans.json")
    return workspace


def test_a_model_trained_on_one_dataset_is_fine_tuned_on_another_with_moved_plans(two_datasets, caplog) -> None:
    workspace = two_datasets
    quiet = ProgressReporter("none")
    preprocess_dataset(workspace, SOURCE, ["3d_fullres"], num_workers=0)
    source_model = train(workspace, SOURCE, "3d_fullres", "all", tiny_config(epochs=1, final_validation=False), quiet)
    checkpoint = source_model / "fold_all" / "checkpoint_final.pth"

    assert main(["--workspace", str(workspace.results.parent), "move-plans", "1", "Beta"]) == 0
    moved = Plans.load(workspace.preprocessed / TARGET / "plans.json")
    assert (moved.dataset_name, moved.plans_name) == (TARGET, MOVED)
    preprocess_dataset(workspace, TARGET, ["3d_fullres"], num_workers=0)
    assert len(list((workspace.preprocessed / TARGET / f"{MOVED}_3d").glob("case_*.json"))) == 5
    with caplog.at_level(logging.INFO):
        target_model = train(workspace, TARGET, "3d_fullres", 0,
                             tiny_config(epochs=1, lr=1e-9, final_validation=False), quiet, pretrained=checkpoint)
    assert "segmentation head re-made" in caplog.text
    assert target_model == workspace.results / TARGET / f"AutoSegNet__{MOVED}__3d_fullres"
    tuned = load_checkpoint(target_model / "fold_0" / "checkpoint_final.pth")["network_weights"]
    start = load_checkpoint(checkpoint)["network_weights"]
    encoder = [k for k in start if k.startswith("encoder.") and k.endswith(".weight")]
    assert encoder and all(torch.allclose(tuned[k], start[k], atol=1e-6) for k in encoder)  # tiny lr: the source's


def test_everything_but_names_data_identifiers_and_reader_is_kept_as_nnunet_does() -> None:
    plans = source_plans(normalization="CTNormalization")
    dataset_json = DatasetJson(channel_names={"0": "CT"}, labels={"background": 0, "liver": 1}, num_training=2,
                               file_ending=".nrrd")
    moved = moved_plans(plans, TARGET, dataset_json, "Transfer")
    assert (moved.dataset_name, moved.plans_name) == (TARGET, "Transfer")
    assert moved.configurations["3d_fullres"].data_identifier == "Transfer_3d"  # AutoSegNetPlans_3d renamed
    assert moved.image_reader_writer == io_for(".nrrd").name
    assert moved.foreground_intensity_properties == plans.foreground_intensity_properties  # the source's CT clipping
    expected = copy.deepcopy(plans.configurations["3d_fullres"])
    expected.data_identifier = "Transfer_3d"
    assert moved.configurations["3d_fullres"] == expected


def test_a_data_identifier_without_the_plans_name_gets_it_in_front() -> None:
    plans = source_plans()
    plans.configurations["3d_fullres"].data_identifier = "nnUNetPlans_3d_fullres"  # shared data, as ResEnc plans
    moved = moved_plans(plans, TARGET, DatasetJson({"0": "MR"}, {"background": 0, "a": 1}, 1, ".nii.gz"), "New")
    assert moved.configurations["3d_fullres"].data_identifier == "New_nnUNetPlans_3d_fullres"


def test_the_default_plans_name_says_where_the_plans_came_from() -> None:
    assert default_plans_name(source_plans()) == MOVED


def test_the_targets_own_plans_are_kept_aside_and_a_second_move_is_a_no_op(two_datasets: Workspace) -> None:
    own = source_plans(TARGET)
    own.plans_name = "nnUNetPlans"
    own.save(two_datasets.preprocessed / TARGET / "plans.json")
    written = move_plans(two_datasets, SOURCE, TARGET)
    assert Plans.load(two_datasets.preprocessed / TARGET / "nnUNetPlans.json") == own
    assert Plans.load(written).plans_name == MOVED
    assert move_plans(two_datasets, SOURCE, TARGET) == written
    assert sorted(p.name for p in (two_datasets.preprocessed / TARGET).iterdir()) == [
        "dataset.json", "nnUNetPlans.json", "plans.json"]


def test_other_plans_of_the_same_name_are_replaced_only_with_force(two_datasets: Workspace, capsys) -> None:
    command = ["--workspace", str(two_datasets.results.parent), "move-plans", SOURCE, TARGET]
    assert main(command) == 0
    plans = source_plans()
    plans.configurations["3d_fullres"].batch_size = 4
    plans.save(two_datasets.preprocessed / SOURCE / "plans.json")
    assert main(command) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*command, "--force", "--progress", "json"]) == 0
    done = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert done["plans_name"] == MOVED and done["dataset"] == TARGET and done["configurations"] == ["3d_fullres"]
    assert Plans.load(two_datasets.preprocessed / TARGET / "plans.json").configurations["3d_fullres"].batch_size == 4


def test_the_plans_of_an_installed_model_or_a_plans_file_can_be_moved(two_datasets: Workspace, tmp_path) -> None:
    plans_file = two_datasets.preprocessed / SOURCE / "plans.json"
    model = two_datasets.results / SOURCE / "AutoSegNet__AutoSegNetPlans__3d_fullres"
    model.mkdir(parents=True)
    plans_file.rename(model / "plans.json")  # a downloaded model: no preprocessed plans
    written = move_plans(two_datasets, "Alpha", "2", target_plans="FromModel")
    assert Plans.load(written).configurations["3d_fullres"].data_identifier == "FromModel_3d"
    written = move_plans(two_datasets, str(model / "plans.json"), "2", target_plans="FromFile")
    assert Plans.load(written).plans_name == "FromFile"


def test_a_target_with_other_channels_is_refused(two_datasets: Workspace) -> None:
    a_raw_dataset(two_datasets, "Dataset003_Gamma", {"background": 0, "a": 1}, n_cases=1, channels=2)
    with pytest.raises(AutoSegNetError, match=r"for 1 input channel\(s\).*Dataset003_Gamma has 2"):
        move_plans(two_datasets, SOURCE, "3")
    assert not (two_datasets.preprocessed / "Dataset003_Gamma").exists()


def test_a_source_without_plans_says_how_to_get_them(two_datasets: Workspace) -> None:
    with pytest.raises(AutoSegNetError, match="No plans for Dataset002_Beta.*autosegnet plan Dataset002_Beta"):
        move_plans(two_datasets, TARGET, SOURCE)
    with pytest.raises(AutoSegNetError, match="No plans named 'nnUNetPlans' for Dataset001_Alpha"):
        move_plans(two_datasets, SOURCE, TARGET, source_plans="nnUNetPlans")


def test_plans_names_that_cannot_name_a_folder_are_refused(two_datasets: Workspace) -> None:
    with pytest.raises(AutoSegNetError, match="cannot name a folder"):
        move_plans(two_datasets, SOURCE, TARGET, target_plans="my__plans")
