"""Connected-component postprocessing, cross-validation results and ``find-best`` on hand-made predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _helpers_inference import DATASET, geometry, tiny_configuration, tiny_dataset_json, write_model_folder

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation import LabelSet
from AutoSegNetLib.evaluation.evaluate import CasePair
from AutoSegNetLib.evaluation.find_best import find_best_configuration
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.inference.outputs import LabelInfo, write_probabilities, write_segmentation
from AutoSegNetLib.postprocessing import apply_postprocessing, keep_largest_component
from AutoSegNetLib.postprocessing.determine import determine_postprocessing
from AutoSegNetLib.workspace import Workspace

SHAPE = (8, 9, 10)
CASES = ("c0", "c1", "c2", "c3")


def test_keep_largest_component_removes_smaller_pieces_of_the_given_labels_only() -> None:
    seg = np.zeros((1, 6, 6), np.uint8)
    seg[0, :3, :3] = 1          # 9 voxels
    seg[0, 5, 5] = 1            # stray voxel of label 1
    seg[0, 4, 0] = 2            # a lone label-2 voxel stays: label 2 is not processed
    out = keep_largest_component(seg, [1])
    assert out[0, 5, 5] == 0 and out[0, 4, 0] == 2 and (out[0, :3, :3] == 1).all()
    diagonal = np.zeros((1, 3, 3), np.uint8)
    diagonal[0, 0, 0] = diagonal[0, 1, 1] = 1   # touching at a corner: one component (full connectivity)
    np.testing.assert_array_equal(keep_largest_component(diagonal, [1]), diagonal)


def reference(case: int) -> np.ndarray:
    seg = np.zeros(SHAPE, np.uint8)
    seg[1:5, 2:6, 2 + case % 2 : 6] = 1
    seg[5:7, 5:8, 6:9] = 2
    return seg


def with_stray_voxels(seg: np.ndarray, case: int) -> np.ndarray:
    out = seg.copy()
    out[0, 0, case % 3] = 1
    out[7, 0, 9] = 2
    return out


def write_pairs(tmp_path: Path, predictions: dict[str, np.ndarray]) -> list[CasePair]:
    pairs = []
    for index, (case, prediction) in enumerate(predictions.items()):
        ref = write_segmentation(tmp_path / "ref", case, reference(index), geometry(), ".nii.gz")
        pred = write_segmentation(tmp_path / "pred", case, prediction, geometry(), ".nii.gz")
        pairs.append(CasePair(case, ref, pred))
    return pairs


def test_largest_component_is_kept_where_it_improves_dice(tmp_path: Path) -> None:
    predictions = {case: with_stray_voxels(reference(i), i) for i, case in enumerate(CASES)}
    rules = determine_postprocessing(write_pairs(tmp_path, predictions), LabelSet.from_values([1, 2]))
    assert rules["steps"][0] == {"operation": "keep_largest_component", "labels": [1, 2]}
    assert rules["dice_after"]["foreground_mean"] > rules["dice_before"]["foreground_mean"]
    cleaned = apply_postprocessing(predictions["c0"], rules)
    np.testing.assert_array_equal(cleaned, reference(0))


def test_no_step_is_kept_when_every_component_is_real(tmp_path: Path) -> None:
    predictions = {}
    for i, case in enumerate(CASES):
        seg = reference(i)
        seg[0, 0, 0] = 1   # also in the reference below: removing it would cost Dice
        predictions[case] = seg
    pairs = write_pairs(tmp_path, predictions)
    for pair in pairs:
        write_segmentation(tmp_path / "ref", pair.case, predictions[pair.case], geometry(), ".nii.gz")
    rules = determine_postprocessing(pairs, LabelSet.from_values([1, 2]))
    assert rules["steps"] == []


# ----- cross-validation of model folders and find-best --------------------------------------------------
def confident(seg: np.ndarray) -> np.ndarray:
    """Probabilities ``(3, *S)`` whose arg-max is ``seg``: 0.9 for the chosen label, 0.05 for the others."""
    return np.eye(3, dtype=np.float32)[seg].transpose(3, 0, 1, 2) * 0.85 + 0.05


def a_workspace(tmp_path: Path, configurations: dict[str, dict[str, np.ndarray]], folds=("0", "1")) -> Path:
    """Raw dataset with labels, and one model folder per configuration whose fold folders hold validation
    predictions (probabilities per case, and their arg-max as label maps) of half of the cases each."""
    workspace = tmp_path / "ws"
    raw = workspace / "raw" / DATASET
    raw.mkdir(parents=True)
    tiny_dataset_json().save(raw / "dataset.json")
    for index, case in enumerate(CASES):
        write_segmentation(raw / "labelsTr", case, reference(index), geometry(), ".nii.gz")
        write_segmentation(raw / "imagesTr", f"{case}_0000", reference(index), geometry(), ".nii.gz")
    label_info = LabelInfo.of(tiny_dataset_json())
    for name, probabilities in configurations.items():
        folder = write_model_folder(workspace / "results", tiny_configuration(name), tiny_dataset_json(), folds=folds)
        for index, case in enumerate(CASES):
            validation = folder / f"fold_{folds[index % len(folds)]}" / "validation"
            seg = probabilities[case].argmax(0).astype(np.uint8)
            write_segmentation(validation, case, seg, geometry(), ".nii.gz")
            write_probabilities(validation, case, probabilities[case], geometry(), ".nii.gz", label_info)
    return workspace


def test_cli_postprocess_determine_writes_rules_into_the_model_folder_and_apply_uses_them(tmp_path: Path) -> None:
    predictions = {case: confident(with_stray_voxels(reference(i), i)) for i, case in enumerate(CASES)}
    workspace = a_workspace(tmp_path, {"3d_fullres": predictions})
    assert main(["postprocess", "determine", "--workspace", str(workspace), "-d", "1", "-c", "3d_fullres",
                 "-f", "0", "1"]) == 0
    folder = workspace / "results" / DATASET / "AutoSegNet__nnUNetPlans__3d_fullres"
    rules = json.loads((folder / "postprocessing.json").read_text())
    assert rules["steps"][0]["labels"] == [1, 2]
    validation = folder / "fold_0" / "validation"
    assert main(["postprocess", "apply", "--workspace", str(workspace), "-d", "1", "-c", "3d_fullres",
                 "-i", str(validation), "-o", str(tmp_path / "pp")]) == 0
    cleaned = io_for(".nii.gz").read_seg(tmp_path / "pp" / "c0.nii.gz")[0]
    np.testing.assert_array_equal(cleaned, reference(0))
    assert not list((tmp_path / "pp").glob("*.npz"))


def damaged(seg: np.ndarray, voxels: int) -> np.ndarray:
    out = seg.copy()
    out.reshape(-1)[np.flatnonzero(seg.reshape(-1) == 1)[:voxels]] = 0
    return out


def test_find_best_ranks_configurations_and_ensembles_and_prints_the_command(tmp_path: Path, capsys) -> None:
    good = {case: confident(with_stray_voxels(reference(i), i)) for i, case in enumerate(CASES)}
    worse = {case: confident(damaged(reference(i), 20)) for i, case in enumerate(CASES)}
    workspace = a_workspace(tmp_path, {"3d_fullres": good, "2d": worse})
    assert main(["find-best", "--workspace", str(workspace), "-d", "1", "-f", "0", "1"]) == 0
    out = capsys.readouterr().out
    results = workspace / "results" / DATASET
    info = json.loads((results / "inference_information.json").read_text())
    names = [item["name"] for item in info["ranking"]]
    assert set(names) == {"3d_fullres", "2d", "ensemble__2d__3d_fullres"}
    assert info["best"]["name"] == "3d_fullres" and names[0] == "3d_fullres"
    assert info["commands"] == ["autosegnet predict -d Dataset001_Tiny -c 3d_fullres -f 0 1 -i INPUT_FOLDER "
                                "-o OUTPUT_FOLDER"]
    assert "autosegnet predict -d Dataset001_Tiny -c 3d_fullres" in out
    assert (results / "AutoSegNet__nnUNetPlans__3d_fullres" / "postprocessing.json").is_file()
    assert (results / "AutoSegNet__nnUNetPlans__3d_fullres" / "crossval_folds_0_1" / "summary.json").is_file()
    ensemble_summary = results / "ensembles" / "ensemble__2d__3d_fullres__folds_0_1" / "summary.json"
    assert json.loads(ensemble_summary.read_text())["num_cases"] == len(CASES)


def unsure_where_missing(case: int, missing: slice) -> np.ndarray:
    """Confident and right except on some label-1 voxels, where it leans to background (0.55 vs 0.45)."""
    probabilities = confident(reference(case))
    where = np.zeros(SHAPE, bool)
    where[missing] = reference(case)[missing] == 1
    probabilities[:, where] = np.array([[0.55], [0.45], [0.0]], np.float32)
    return probabilities


def test_find_best_recommends_an_ensemble_when_it_wins(tmp_path: Path) -> None:
    # each configuration misses other voxels, unsure there; the average of the probabilities is right everywhere
    first = {case: unsure_where_missing(i, np.s_[1:3]) for i, case in enumerate(CASES)}
    second = {case: unsure_where_missing(i, np.s_[3:5]) for i, case in enumerate(CASES)}
    workspace = a_workspace(tmp_path, {"3d_fullres": first, "2d": second})
    info = find_best_configuration(Workspace.at(workspace), "1", folds=["0", "1"])
    assert info["best"]["name"] == "ensemble__2d__3d_fullres" and info["best"]["foreground_dice"] == 1.0
    assert info["commands"] == [
        "autosegnet predict -d Dataset001_Tiny -c 2d -f 0 1 -i INPUT_FOLDER -o OUTPUT_FOLDER_2d --save-probabilities "
        "--disable-postprocessing",
        "autosegnet predict -d Dataset001_Tiny -c 3d_fullres -f 0 1 -i INPUT_FOLDER -o OUTPUT_FOLDER_3d_fullres "
        "--save-probabilities --disable-postprocessing",
        "autosegnet ensemble -i OUTPUT_FOLDER_2d OUTPUT_FOLDER_3d_fullres -o OUTPUT_FOLDER_ENSEMBLE",
    ]


def test_find_best_without_cross_validation_results_is_a_clear_error(tmp_path: Path, capsys) -> None:
    workspace = a_workspace(tmp_path, {"3d_fullres": {c: confident(reference(i)) for i, c in enumerate(CASES)}})
    assert main(["find-best", "--workspace", str(workspace), "-d", "1"]) == 2  # folds 2-4 were never trained
    assert "cross-validation" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"format": "x"}, {"format": "autosegnet-postprocessing", "version": 9, "steps": []}])
def test_unknown_postprocessing_files_are_refused(bad) -> None:
    with pytest.raises(AutoSegNetError):
        apply_postprocessing(np.zeros((2, 2, 2), np.uint8), bad)
