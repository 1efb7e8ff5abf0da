"""Predicting folders of files (``autosegnet predict``), stored probabilities, uncertainty maps and ensembles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from _helpers_inference import DATASET, blob_image, tiny_configuration, tiny_dataset_json, write_model_folder
from PIL import Image

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.inference import Predictor, predict_files
from AutoSegNetLib.inference.outputs import read_probabilities

torch.set_num_threads(2)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def a_model_folder(workspace: Path) -> Path:
    return write_model_folder(workspace / "results", tiny_configuration(), tiny_dataset_json(), folds=(0, 1),
                              mirror_axes=None)


def write_case(folder: Path, name: str, shape=(10, 12, 9), spacing=(2.0, 1.0, 1.5), channels: int = 1) -> None:
    """``<name>_0000.nii.gz`` with a non-trivial origin and direction."""
    folder.mkdir(parents=True, exist_ok=True)
    image = blob_image(shape, channels, seed=len(name))
    for c in range(channels):
        itk = sitk.GetImageFromArray(image[c])
        itk.SetSpacing(spacing[::-1])
        itk.SetOrigin((5.0, -3.0, 12.5))
        itk.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
        sitk.WriteImage(itk, str(folder / f"{name}_{c:04d}.nii.gz"))


def test_predicted_files_keep_the_input_geometry_and_format(tmp_path: Path, a_model_folder: Path) -> None:
    write_case(tmp_path / "in", "caseA")
    predictor = Predictor.from_model_folder(a_model_folder, folds=None, device="cpu")
    written = predict_files(predictor, tmp_path / "in", tmp_path / "out", save_probabilities=True,
                            uncertainty="entropy")
    assert [p.name for p in written] == ["caseA.nii.gz"]
    source = sitk.ReadImage(str(tmp_path / "in" / "caseA_0000.nii.gz"))
    result = sitk.ReadImage(str(written[0]))
    assert result.GetSize() == source.GetSize()
    assert result.GetSpacing() == pytest.approx(source.GetSpacing())
    assert result.GetOrigin() == pytest.approx(source.GetOrigin())
    assert result.GetDirection() == pytest.approx(source.GetDirection())
    stored = read_probabilities(tmp_path / "out", "caseA")
    assert stored.probabilities.shape == (3, 10, 12, 9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), stored.probabilities.argmax(0))
    uncertainty = sitk.ReadImage(str(tmp_path / "out" / "caseA_uncertainty.nii.gz"))
    assert uncertainty.GetSize() == source.GetSize()
    assert sitk.GetArrayFromImage(uncertainty).min() >= 0 and sitk.GetArrayFromImage(uncertainty).max() <= 1
    info = json.loads((tmp_path / "out" / "prediction_info.json").read_text())
    assert info["folds"] == ["0", "1"] and info["configuration"] == "3d_fullres"


def test_in_memory_and_file_prediction_agree(tmp_path: Path, a_model_folder: Path) -> None:
    write_case(tmp_path / "in", "caseA")
    predictor = Predictor.from_model_folder(a_model_folder, device="cpu")
    predict_files(predictor, tmp_path / "in", tmp_path / "out")
    image, geo = io_for(".nii.gz").read_images([tmp_path / "in" / "caseA_0000.nii.gz"])
    segmentation = predictor.predict(image, geo)[0]
    np.testing.assert_array_equal(io_for(".nii.gz").read_seg(tmp_path / "out" / "caseA.nii.gz")[0], segmentation)


def test_parts_split_the_cases_between_runs(tmp_path: Path, a_model_folder: Path) -> None:
    for name in ("a", "b", "c"):
        write_case(tmp_path / "in", name, shape=(8, 8, 8))
    predictor = Predictor.from_model_folder(a_model_folder, device="cpu")
    first = predict_files(predictor, tmp_path / "in", tmp_path / "out", num_parts=2, part_id=0)
    second = predict_files(predictor, tmp_path / "in", tmp_path / "out", num_parts=2, part_id=1)
    assert [p.name for p in first] == ["a.nii.gz", "c.nii.gz"] and [p.name for p in second] == ["b.nii.gz"]
    with pytest.raises(AutoSegNetError, match="part-id"):
        predict_files(predictor, tmp_path / "in", tmp_path / "out", num_parts=2, part_id=2)


def test_a_case_with_a_missing_channel_is_named_in_the_error(tmp_path: Path, workspace: Path) -> None:
    folder = write_model_folder(workspace / "results", tiny_configuration(channels=2), tiny_dataset_json(2))
    write_case(tmp_path / "in", "caseA", channels=1)
    predictor = Predictor.from_model_folder(folder, device="cpu")
    with pytest.raises(AutoSegNetError, match="caseA.*0000, 0001"):
        predict_files(predictor, tmp_path / "in", tmp_path / "out")


def test_cli_predict_by_dataset_and_configuration_emits_one_event_per_case(tmp_path, workspace, a_model_folder,
                                                                          capsys) -> None:
    (workspace / "raw" / DATASET).mkdir(parents=True)
    for name in ("a", "b"):
        write_case(tmp_path / "in", name, shape=(8, 8, 8))
    code = main(["predict", "--workspace", str(workspace), "--progress", "json", "-i", str(tmp_path / "in"),
                 "-o", str(tmp_path / "out"), "-d", "1", "-c", "3d_fullres", "-f", "0", "--device", "cpu",
                 "--no-tta"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["case"] for e in events if e["event"] == "case"] == ["a", "b"]
    assert events[-1]["event"] == "done"
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == ["a.nii.gz", "b.nii.gz"]


def test_cli_predict_with_a_model_folder_and_unknown_configuration_fails_clearly(tmp_path, workspace, a_model_folder,
                                                                                 capsys) -> None:
    write_case(tmp_path / "in", "a", shape=(8, 8, 8))
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model-folder",
                 str(a_model_folder), "--device", "cpu", "--no-tta", "--save-uncertainty", "disagreement",
                 "--average", "logits"]) == 0
    assert (tmp_path / "out" / "a_uncertainty.nii.gz").is_file()
    (workspace / "raw" / DATASET).mkdir(parents=True)
    assert main(["predict", "--workspace", str(workspace), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o2"),
                 "-d", "1", "-c", "2d"]) == 2
    assert "No trained model for configuration '2d'" in capsys.readouterr().err


def test_natural_images_are_predicted_slice_wise_into_png_with_a_tiff_uncertainty(tmp_path: Path,
                                                                                  workspace: Path) -> None:
    configuration = tiny_configuration("2d", ndim=2, patch=(8, 8))
    folder = write_model_folder(workspace / "results", configuration, tiny_dataset_json(ending=".png"))
    (tmp_path / "in").mkdir()
    pixels = (blob_image((1, 13, 11))[0, 0] * 30).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in" / "img_0000.png")
    predictor = Predictor.from_model_folder(folder, device="cpu")
    predict_files(predictor, tmp_path / "in", tmp_path / "out", uncertainty="entropy")
    assert np.asarray(Image.open(tmp_path / "out" / "img.png")).shape == (13, 11)
    assert io_for(".tif").read_images([tmp_path / "out" / "img_uncertainty.tif"])[0].shape == (1, 1, 13, 11)


def test_ensemble_of_two_folders_averages_their_probabilities(tmp_path: Path, a_model_folder: Path) -> None:
    write_case(tmp_path / "in", "caseA")
    for fold in ("0", "1"):
        predictor = Predictor.from_model_folder(a_model_folder, folds=[fold], device="cpu")
        predict_files(predictor, tmp_path / "in", tmp_path / f"fold{fold}", save_probabilities=True)
    assert main(["ensemble", "-i", str(tmp_path / "fold0"), str(tmp_path / "fold1"), "-o", str(tmp_path / "ens"),
                 "--save-probabilities"]) == 0
    averaged = read_probabilities(tmp_path / "ens", "caseA").probabilities
    expected = (read_probabilities(tmp_path / "fold0", "caseA").probabilities
                + read_probabilities(tmp_path / "fold1", "caseA").probabilities) / 2
    np.testing.assert_allclose(averaged, expected, atol=1e-6)
    segmentation, geo = io_for(".nii.gz").read_seg(tmp_path / "ens" / "caseA.nii.gz")
    np.testing.assert_array_equal(segmentation, expected.argmax(0))
    assert geo.differences(io_for(".nii.gz").read_images([tmp_path / "in" / "caseA_0000.nii.gz"])[1]) == []


def test_ensemble_refuses_folders_without_probabilities(tmp_path: Path, a_model_folder: Path, capsys) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert main(["ensemble", "-i", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "c")]) == 2
    assert "--save-probabilities" in capsys.readouterr().err




def test_cli_warns_about_another_orientation_and_reorient_writes_the_input_geometry(tmp_path, a_model_folder,
                                                                                   caplog) -> None:
    from _helpers_planning import uniform_fingerprint

    fingerprint = uniform_fingerprint(2, (1.0, 1.0, 1.0), (8, 8, 8))
    for case in fingerprint.cases:
        case.orientation = "LPS"
    fingerprint.save(a_model_folder / "fingerprint.json")
    write_case(tmp_path / "in", "a", shape=(8, 9, 7))  # direction code "ALS"
    common = ["predict", "-i", str(tmp_path / "in"), "--model-folder", str(a_model_folder), "--device", "cpu",
              "--no-tta"]
    assert main([*common, "-o", str(tmp_path / "as_stored")]) == 0
    assert "'a' is stored in orientation ALS" in caplog.text
    caplog.clear()
    assert main([*common, "-o", str(tmp_path / "turned"), "--reorient"]) == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    info = json.loads((tmp_path / "turned" / "prediction_info.json").read_text())
    assert info["reorient"] is True and info["training_orientation"] == "LPS"
    source = sitk.ReadImage(str(tmp_path / "in" / "a_0000.nii.gz"))
    result = sitk.ReadImage(str(tmp_path / "turned" / "a.nii.gz"))
    assert result.GetSize() == source.GetSize() and result.GetDirection() == pytest.approx(source.GetDirection())
    assert result.GetOrigin() == pytest.approx(source.GetOrigin())
