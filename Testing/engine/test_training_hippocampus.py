"""Real data (slow): the shared Hippocampus cases through fingerprint, planner, preprocessing and training."""

from __future__ import annotations

import pytest
from _helpers_preprocessing import hippocampus_raw

from AutoSegNetLib.fingerprint.extract import extract_fingerprint
from AutoSegNetLib.planning.experiment import plan_experiment
from AutoSegNetLib.preprocessing.preprocess_dataset import preprocess_dataset
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.training import TrainingConfig, train
from AutoSegNetLib.training.checkpoint import load_checkpoint
from AutoSegNetLib.utils.atomic import read_json
from AutoSegNetLib.workspace import Workspace


@pytest.mark.slow
def test_planned_hippocampus_trains_and_validates_in_the_original_geometry(shared_data, tmp_path):
    workspace = Workspace.at(tmp_path).create()
    hippocampus_raw(workspace.raw, n_cases=12)
    extract_fingerprint(workspace, "4")
    plan_experiment(workspace, "4", configurations=["3d_fullres"])
    preprocess_dataset(workspace, "4", ["3d_fullres"], num_workers=2)
    config = TrainingConfig(device="cpu", epochs=2, iterations_per_epoch=4, val_iterations=2, batch_size=2,
                            num_workers=1)
    folder = train(workspace, "4", "3d_fullres", 0, config, ProgressReporter("none"))
    summary = read_json(folder / "fold_0" / "validation" / "summary.json")
    assert summary["space"] == "original" and summary["num_cases"] == 3
    assert summary["labels"] == {"1": "Anterior", "2": "Posterior"}
    assert len(list((folder / "fold_0" / "validation").glob("hippocampus_*.nii.gz"))) == 3
    checkpoint = load_checkpoint(folder / "fold_0" / "checkpoint_final.pth")
    assert checkpoint["epoch"] == 2 and checkpoint["training_config"]["batch_size"] == 2
