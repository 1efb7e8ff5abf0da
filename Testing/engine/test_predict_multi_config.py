"""``predict -c 2d 3d_fullres``: several configurations in one run, their probabilities averaged as ``ensemble``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from _helpers_inference import DATASET, blob_image, tiny_configuration, tiny_dataset_json, write_model_folder

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.inference import Predictor, predict_files
from AutoSegNetLib.inference.files import PredictionFailedError
from AutoSegNetLib.inference.multi_config import MEMBERS_FOLDER, predict_with_configurations
from AutoSegNetLib.inference.outputs import read_probabilities
from AutoSegNetLib.utils.stop import StopRequest

torch.set_num_threads(2)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "ws" / "raw" / DATASET).mkdir(parents=True)
    return tmp_path / "ws"


@pytest.fixture
def two_models(workspace: Path) -> list[Path]:
    """A 2d and a 3d_fullres model of the same dataset (one random fold each, no mirroring)."""
    dataset_json = tiny_dataset_json()
    return [
        write_model_folder(workspace / "results", tiny_configuration("2d", ndim=2, patch=(8, 8)), dataset_json,
                           mirror_axes=None),
        write_model_folder(workspace / "results", tiny_configuration("3d_fullres"), dataset_json, mirror_axes=None),
    ]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for index, name in enumerate(("a", "b")):
        itk = sitk.GetImageFromArray(blob_image((8, 9, 10), seed=index)[0])
        itk.SetSpacing((1.5, 1.0, 2.0))
        sitk.WriteImage(itk, str(folder / f"{name}_0000.nii.gz"))
    return folder


def load(folder: Path) -> Predictor:
    return Predictor.from_model_folder(folder, folds=None, device="cpu", tta=False, postprocess=False)


def separately(models: list[Path], images: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    """Per case, the mean of the configurations' probabilities, each configuration predicted on its own."""
    for index, folder in enumerate(models):
        predict_files(load(folder), images, tmp_path / f"alone{index}", save_probabilities=True)
    return {case: np.mean([read_probabilities(tmp_path / f"alone{i}", case).probabilities for i in range(len(models))],
                          axis=0) for case in ("a", "b")}


def test_the_ensemble_is_the_mean_of_each_configurations_probabilities(tmp_path, two_models, images):
    written = predict_with_configurations(two_models, load, images, tmp_path / "out", save_probabilities=True)
    assert [p.name for p in written] == ["a.nii.gz", "b.nii.gz"]
    for case, expected in separately(two_models, images, tmp_path).items():
        averaged = read_probabilities(tmp_path / "out", case).probabilities
        np.testing.assert_allclose(averaged, expected, atol=1e-6)
        segmentation, geometry = io_for(".nii.gz").read_seg(tmp_path / "out" / f"{case}.nii.gz")
        np.testing.assert_array_equal(segmentation, expected.argmax(0))
        assert geometry.spacing == (2.0, 1.0, 1.5)
    assert not (tmp_path / "out" / MEMBERS_FOLDER).exists()
    info = json.loads((tmp_path / "out" / "prediction_info.json").read_text())
    assert [m["configuration"] for m in info["members"]] == ["2d", "3d_fullres"] and not info["postprocessing"]


def test_the_members_stay_when_only_one_part_of_the_cases_is_predicted(tmp_path, two_models, images):
    written = predict_with_configurations(two_models, load, images, tmp_path / "out", num_parts=2, part_id=1)
    assert [p.name for p in written] == ["b.nii.gz"]
    members = sorted(p.name for p in (tmp_path / "out" / MEMBERS_FOLDER).iterdir())
    assert members == ["AutoSegNet__nnUNetPlans__2d", "AutoSegNet__nnUNetPlans__3d_fullres"]
    assert not (tmp_path / "out" / "a.nii.gz").exists()


def test_continue_predicts_only_the_cases_without_an_ensembled_label_map(tmp_path, two_models, images):
    predict_with_configurations(two_models, load, images, tmp_path / "out")
    (tmp_path / "out" / "b.nii.gz").unlink()
    loaded = []
    predict_with_configurations(two_models, lambda f: loaded.append(f) or load(f), images, tmp_path / "out",
                                skip_existing=True)
    assert (tmp_path / "out" / "b.nii.gz").is_file() and len(loaded) == 2


def test_a_stop_before_the_start_writes_nothing(tmp_path, two_models, images):
    stop = StopRequest()
    stop.request("test")
    assert predict_with_configurations(two_models, load, images, tmp_path / "out", stop=stop) == []
    assert not (tmp_path / "out").exists()


def test_a_case_that_fails_is_reported_after_the_others_are_ensembled(tmp_path, two_models, images):
    (images / "c_0000.nii.gz").write_bytes(b"not an image")
    with pytest.raises(PredictionFailedError) as failed:
        predict_with_configurations(two_models, load, images, tmp_path / "out")
    assert [f.case for f in failed.value.failures] == ["c"]
    assert sorted(p.name for p in failed.value.written) == ["a.nii.gz", "b.nii.gz"]
    assert (tmp_path / "out" / MEMBERS_FOLDER).is_dir()  # kept for --continue


def test_one_model_folder_is_not_an_ensemble(tmp_path, two_models, images):
    with pytest.raises(AutoSegNetError, match="at least two"):
        predict_with_configurations(two_models[:1], load, images, tmp_path / "out")


def test_cli_predict_with_two_configurations_ends_with_one_done_event(tmp_path, workspace, two_models, images, capsys):
    code = main(["predict", "--workspace", str(workspace), "--progress", "json", "-i", str(images), "-o",
                 str(tmp_path / "out"), "-d", "1", "-c", "2d", "3d_fullres", "-device", "cpu", "--disable_tta",
                 "--save_probabilities"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    done = [e for e in events if e["event"] == "done"]
    assert len(done) == 1 and done[0]["configurations"] == ["2d", "3d_fullres"] and done[0]["cases"] == 2
    member_cases = [(e["configuration"], e["case"]) for e in events if e["event"] == "case" and e["stage"] == "predict"]
    assert member_cases == [("2d", "a"), ("2d", "b"), ("3d_fullres", "a"), ("3d_fullres", "b")]
    assert [e["case"] for e in events if e["event"] == "case" and e["stage"] == "ensemble"] == ["a", "b"]
    expected = separately(two_models, images, tmp_path)["a"]
    np.testing.assert_allclose(read_probabilities(tmp_path / "out", "a").probabilities, expected, atol=1e-6)


@pytest.mark.parametrize(("extra", "message"), [
    (["-c", "2d", "2d"], "names a configuration twice"),
    (["-c", "2d", "3d_fullres", "--save-uncertainty"], "needs one configuration"),
    (["-c", "2d", "3d_fullres", "--model-folder", "M"], "--model-folder names one model"),
])
def test_impossible_ensembles_are_refused_while_parsing(extra, message, capsys):
    with pytest.raises(SystemExit):
        main(["predict", "-i", "IN", "-o", "OUT", "-d", "1", *extra])
    assert message in capsys.readouterr().err
