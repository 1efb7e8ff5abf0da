"""The README's main job: `autosegnet demo` runs every stage on the synthetic dataset."""

from __future__ import annotations

import json

import numpy as np

from AutoSegNetLib.cli import main
from AutoSegNetLib.dataset import RawDataset
from AutoSegNetLib.demo.synthetic import LABELS, make_case, write_synthetic_dataset
from AutoSegNetLib.workspace import Workspace


def test_synthetic_cases_hold_both_labels_inside_the_volume():
    image, seg = make_case(np.random.default_rng(3))
    assert image.shape == seg.shape == (24, 40, 40)
    assert set(np.unique(seg)) == set(LABELS.values())
    assert seg[0].max() == 0 and seg[-1].max() == 0  # nothing touches the border slices


def test_the_synthetic_dataset_is_a_valid_raw_dataset(tmp_path):
    folder = write_synthetic_dataset(Workspace.at(tmp_path), num_cases=3)
    dataset = RawDataset.open(folder)
    assert [c.name for c in dataset.training_cases()] == ["case_000", "case_001", "case_002"]
    image, seg, geometry = dataset.read_case(dataset.training_cases()[0])
    assert image.shape == (1, 24, 40, 40) and geometry.spacing == (1.5, 1.0, 1.0)


def test_demo_runs_every_stage_and_reports_dice_per_label(tmp_path, capsys):
    code = main(["demo", "--workspace", str(tmp_path), "--progress", "json", "--epochs", "1", "--iterations", "2",
                 "--cases", "5", "-np", "0", "--device", "cpu"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    stages = [e["stage"] for e in events if e["event"] == "stage" and "stage" in e]
    for expected in ("dataset", "verify", "plan", "preprocess", "train", "predict", "evaluate"):
        assert expected in stages
    done = [e for e in events if e["event"] == "done" and "test_dice" in e][-1]
    assert set(done["test_dice"]) == {"inner", "outer"}  # by label name
    assert all(0.0 <= d <= 1.0 for d in done["test_dice"].values())
    model = tmp_path / "results" / "Dataset900_SyntheticEllipsoids"
    assert list(model.glob("*/fold_0/checkpoint_final.pth"))
    assert len(list((model / "demo_test" / "predictions").glob("*.nii.gz"))) == 3
