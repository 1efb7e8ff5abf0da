"""The inference chain on a model that really learned: the demo trains a small 3d_fullres U-Net on synthetic
ellipsoids on the CPU, then its test cases are predicted, evaluated, exported, installed elsewhere and predicted
again (slow: about 2 minutes on 2 cores)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from AutoSegNetLib.cli import main

pytestmark = pytest.mark.slow

DATASET = "Dataset900_SyntheticEllipsoids"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace where ``autosegnet demo`` trained fold 0 and predicted 3 held-out cases."""
    workspace = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--workspace", str(workspace), "--progress", "none", "-np", "0", "--device", "cpu"]) == 0
    return workspace


def demo_cases(workspace: Path) -> Path:
    return workspace / "results" / DATASET / "demo_test"


def labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(folder.glob("*.nii.gz"))}


def predict(model: Path, images: Path, output: Path, *options: str) -> dict[str, np.ndarray]:
    assert main(["predict", "--progress", "none", "-i", str(images), "-o", str(output), "--model-folder", str(model),
                 "--device", "cpu", "-f", "0", *options]) == 0
    return labels(output)


def dice_per_label(reference: Path, prediction: Path) -> dict[str, float]:
    summary_path = prediction / "summary.json"
    assert main(["evaluate", str(reference), str(prediction), "-l", "1", "2", "-o", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    return {label: values["Dice"] for label, values in summary["mean"].items()}


def test_the_trained_model_segments_held_out_cases_with_and_without_tta(demo: Path, tmp_path: Path) -> None:
    cases = demo_cases(demo)
    assert min(dice_per_label(cases / "labels", cases / "predictions").values()) > 0.9
    model = next((demo / "results" / DATASET).glob("AutoSegNet__*__3d_fullres"))
    predict(model, cases / "images", tmp_path / "no_tta", "--no-tta")
    assert min(dice_per_label(cases / "labels", tmp_path / "no_tta").values()) > 0.85


def test_averaging_logits_changes_almost_no_voxel_of_a_trained_model(demo: Path, tmp_path: Path) -> None:
    cases = demo_cases(demo)
    model = next((demo / "results" / DATASET).glob("AutoSegNet__*__3d_fullres"))
    by_logits = predict(model, cases / "images", tmp_path / "logits", "--average", "logits")
    by_probabilities = labels(cases / "predictions")
    assert by_logits.keys() == by_probabilities.keys() and by_logits
    differing = sum(int((by_logits[k] != by_probabilities[k]).sum()) for k in by_logits)
    total = sum(v.size for v in by_logits.values())
    assert differing <= 1e-3 * total


def test_an_exported_and_installed_model_predicts_the_same_labels(demo: Path, tmp_path: Path) -> None:
    zip_path = tmp_path / "model.zip"
    assert main(["export-model", "--workspace", str(demo), "-d", "900", "-c", "3d_fullres", "-o", str(zip_path)]) == 0
    elsewhere = tmp_path / "elsewhere"
    assert main(["install-model", "--workspace", str(elsewhere), str(zip_path)]) == 0
    installed = next((elsewhere / "results" / DATASET).glob("AutoSegNet__*__3d_fullres"))
    cases = demo_cases(demo)
    again = predict(installed, cases / "images", tmp_path / "again")
    original = labels(cases / "predictions")
    assert again.keys() == original.keys()
    for name, segmentation in again.items():
        np.testing.assert_array_equal(segmentation, original[name], err_msg=name)
