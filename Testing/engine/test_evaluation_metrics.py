"""Metrics (Dice, IoU, counts, HD95, ASSD) against brute-force references, and ``autosegnet evaluate``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation import (
    LabelSet,
    case_metrics,
    distance_metrics,
    evaluate_folders,
    labels_for,
    load_summary,
)
from AutoSegNetLib.evaluation.metrics import overlap_metrics, surface


def brute_force_surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside the mask or outside the array."""
    padded = np.pad(mask, 1, constant_values=False)
    out = np.zeros_like(mask)
    for index in zip(*np.nonzero(mask)):
        p = tuple(i + 1 for i in index)
        for axis in range(mask.ndim):
            for delta in (-1, 1):
                q = list(p)
                q[axis] += delta
                if not padded[tuple(q)]:
                    out[index] = True
    return out


def brute_force_distances(reference: np.ndarray, prediction: np.ndarray, spacing) -> tuple[float, float]:
    a = np.argwhere(brute_force_surface(prediction)) * np.asarray(spacing)
    b = np.argwhere(brute_force_surface(reference)) * np.asarray(spacing)
    pairwise = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    pred_to_ref, ref_to_pred = pairwise.min(1), pairwise.min(0)
    hd95 = max(np.percentile(pred_to_ref, 95), np.percentile(ref_to_pred, 95))
    return float(hd95), float((pred_to_ref.mean() + ref_to_pred.mean()) / 2)


def test_counts_dice_and_iou_of_a_known_overlap() -> None:
    reference = np.zeros((1, 4, 5), bool)
    prediction = np.zeros((1, 4, 5), bool)
    reference[0, :2, :] = True      # 10 voxels
    prediction[0, 1:3, :] = True    # 10 voxels, 5 shared
    metrics = overlap_metrics(reference, prediction)
    assert metrics == {"Dice": 0.5, "IoU": 5 / 15, "TP": 5, "FP": 5, "FN": 5, "TN": 5, "n_ref": 10, "n_pred": 10}


def test_empty_reference_and_prediction_give_nan_and_one_empty_side_gives_zero_dice() -> None:
    empty = np.zeros((3, 3, 3), bool)
    full = np.ones((3, 3, 3), bool)
    both_empty = overlap_metrics(empty, empty)
    assert math.isnan(both_empty["Dice"]) and math.isnan(both_empty["IoU"]) and both_empty["TN"] == 27
    assert overlap_metrics(empty, full)["Dice"] == 0.0 and overlap_metrics(full, empty)["IoU"] == 0.0
    for a, b in ((empty, empty), (empty, full), (full, empty)):
        distances = distance_metrics(a, b, (1, 1, 1))
        assert math.isnan(distances["HD95"]) and math.isnan(distances["ASSD"])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.7, 1.2)])
def test_surface_distances_match_a_brute_force_reference(seed: int, spacing) -> None:
    rng = np.random.default_rng(seed)
    reference = np.zeros((7, 9, 8), bool)
    prediction = np.zeros((7, 9, 8), bool)
    reference[1:5, 2:7, 1:6] = True
    prediction[2:6, 1:6, 2:8] = True
    prediction[rng.random(prediction.shape) > 0.93] = True
    np.testing.assert_array_equal(surface(reference), brute_force_surface(reference))
    expected_hd95, expected_assd = brute_force_distances(reference, prediction, spacing)
    metrics = distance_metrics(reference, prediction, spacing)
    assert metrics["HD95"] == pytest.approx(expected_hd95, rel=1e-9)
    assert metrics["ASSD"] == pytest.approx(expected_assd, rel=1e-9)


def test_distances_of_a_2d_case_are_measured_in_the_plane() -> None:
    reference = np.zeros((1, 10, 10), bool)
    prediction = np.zeros((1, 10, 10), bool)
    reference[0, 2:5, 2:5] = True
    prediction[0, 2:5, 4:7] = True   # shifted by 2 columns of 0.5 mm
    metrics = distance_metrics(reference, prediction, (999.0, 1.0, 0.5))
    expected = brute_force_distances(reference[0], prediction[0], (1.0, 0.5))
    assert (metrics["HD95"], metrics["ASSD"]) == pytest.approx(expected)
    assert metrics["HD95"] == pytest.approx(1.0)


def test_identical_masks_have_zero_distances_and_dice_one() -> None:
    mask = np.zeros((5, 6, 7), np.uint8)
    mask[1:4, 2:5, 1:6] = 2
    metrics = case_metrics(mask, mask, [2], (1.0, 2.0, 3.0))["2"]
    assert metrics["Dice"] == 1.0 and metrics["HD95"] == 0.0 and metrics["ASSD"] == 0.0


def test_regions_and_the_ignore_label_are_respected() -> None:
    reference = np.array([[[0, 1, 2, 3, 3]]])
    prediction = np.array([[[1, 1, 1, 2, 0]]])
    metrics = case_metrics(reference, prediction, [(1, 2), 2], (1, 1, 1), ignore_label=3, distances=False)
    assert metrics["(1, 2)"]["TP"] == 2 and metrics["(1, 2)"]["FP"] == 1 and metrics["(1, 2)"]["TN"] == 0
    assert metrics["2"] == {"Dice": 0.0, "IoU": 0.0, "TP": 0, "FP": 0, "FN": 1, "TN": 2, "n_ref": 1, "n_pred": 0}


def write_labels(folder: Path, name: str, labels: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(labels.astype(np.uint8))
    image.SetSpacing(spacing[::-1])
    sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))


@pytest.fixture
def reference_and_prediction(tmp_path: Path) -> tuple[Path, Path]:
    reference = np.zeros((6, 6, 6), np.uint8)
    reference[1:4, 1:4, 1:4] = 1
    reference[4:6, 4:6, 4:6] = 2
    prediction = reference.copy()
    prediction[1, 1, 1] = 0
    write_labels(tmp_path / "ref", "a", reference, (2.0, 1.0, 1.0))
    write_labels(tmp_path / "pred", "a", prediction, (2.0, 1.0, 1.0))
    write_labels(tmp_path / "ref", "b", np.zeros((6, 6, 6)))
    write_labels(tmp_path / "pred", "b", np.zeros((6, 6, 6)))
    return tmp_path / "ref", tmp_path / "pred"


def test_evaluate_folders_writes_a_summary_with_means_per_case_and_null_for_undefined(reference_and_prediction) -> None:
    ref, pred = reference_and_prediction
    summary = evaluate_folders(ref, pred, LabelSet.from_values([1, 2]))
    assert summary["num_cases"] == 2 and [c["case"] for c in summary["metric_per_case"]] == ["a", "b"]
    assert summary["mean"]["1"]["Dice"] == pytest.approx(2 * 26 / 53)   # case b (empty) is NaN and left out
    assert summary["mean"]["2"]["Dice"] == 1.0
    assert summary["foreground_mean"]["Dice"] == pytest.approx((2 * 26 / 53 + 1) / 2)
    stored = json.loads((pred / "summary.json").read_text())
    assert stored["metric_per_case"][1]["metrics"]["1"]["Dice"] is None
    assert math.isnan(load_summary(pred / "summary.json")["metric_per_case"][1]["metrics"]["1"]["HD95"])


def test_cli_evaluate_reads_labels_from_dataset_json_and_refuses_unpaired_predictions(
    reference_and_prediction, tmp_path, capsys
) -> None:
    ref, pred = reference_and_prediction
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({"channel_names": {"0": "MR"}, "labels": {"background": 0, "a": 1, "b": 2},
                                        "numTraining": 2, "file_ending": ".nii.gz"}))
    assert main(["evaluate", str(ref), str(pred), "--dataset-json", str(dataset_json), "-o",
                 str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["labels"] == {"1": "a", "2": "b"} and "HD95" in summary["mean"]["1"]
    write_labels(pred, "c", np.zeros((6, 6, 6)))
    assert main(["evaluate", str(ref), str(pred), "-l", "1"]) == 2
    assert "has no reference" in capsys.readouterr().err


def test_labels_are_required_without_a_dataset_json() -> None:
    with pytest.raises(AutoSegNetError, match="-l 1 2"):
        labels_for(None, None, False)
