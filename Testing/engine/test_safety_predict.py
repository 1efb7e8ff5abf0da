"""``predict`` safety (issue #14): never overwrite an input, say what happens to NaN/Inf voxels, refuse images a
model cannot predict (2D into 3D, 4D) naming the case and file, turn unwritable output folders into messages, and
predict the other cases when one fails, listing the failures at the end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from _helpers_inference import blob_image, geometry, tiny_configuration, tiny_dataset_json, write_model_folder

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.inference import Predictor, files, predict_files

torch.set_num_threads(2)
NII = ".nii.gz"


@pytest.fixture
def a_model_folder(tmp_path: Path) -> Path:
    return write_model_folder(tmp_path / "ws" / "results", tiny_configuration(), tiny_dataset_json(), mirror_axes=None)


@pytest.fixture
def a_predictor(a_model_folder: Path) -> Predictor:
    return Predictor.from_model_folder(a_model_folder, device="cpu", tta=False)


def write_input(folder: Path, name: str, image: np.ndarray | None = None, ending: str = NII, seed: int = 0) -> Path:
    """``folder/<name>_0000<ending>``: a ``(Z, Y, X)`` float32 image (default an 8^3 blob image)."""
    path = folder / f"{name}_0000{ending}"
    image = blob_image((8, 8, 8), seed=seed)[0] if image is None else image
    io_for(ending).write_image(np.asarray(image, dtype=np.float32), path, geometry())
    return path


def predict_cli(inputs: Path, output: Path, model_folder: Path, *extra: str) -> int:
    return main(["--progress", "json", "predict", "-i", str(inputs), "-o", str(output), "--model-folder",
                 str(model_folder), "--device", "cpu", "--no-tta", *extra])


def json_events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# ----- item 4: outputs never overwrite inputs ------------------------------------------------------------------
def test_predicting_into_the_input_folder_refuses_a_label_map_named_like_an_input_file(tmp_path, a_model_folder,
                                                                                      capsys):
    inputs = tmp_path / "in"
    write_input(inputs, "b", seed=1)  # b_0000.nii.gz: channel 0 of case b
    write_input(inputs, "b_0000", seed=2)  # b_0000_0000.nii.gz: case b_0000, whose label map is b_0000.nii.gz
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    assert predict_cli(inputs, inputs, a_model_folder) == 2
    error = capsys.readouterr().err
    assert "b_0000.nii.gz" in error and "case 'b_0000'" in error and "channel 0 of case 'b'" in error
    assert "-o" in error
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before  # nothing written, nothing overwritten


def test_an_output_folder_inside_the_input_folder_is_refused_when_an_output_name_is_taken(tmp_path, a_predictor):
    inputs = tmp_path / "in"
    write_input(inputs, "a")
    (inputs / "a.json").write_text('{"notes": "mine"}')  # not an input, but predict -s would overwrite it
    with pytest.raises(AutoSegNetError, match=r"a\.json.*exists.*another -o"):
        predict_files(a_predictor, inputs, inputs, save_probabilities=True)
    assert (inputs / "a.json").read_text() == '{"notes": "mine"}'
    assert not (inputs / "a.nii.gz").exists() and not (inputs / "prediction_info.json").exists()


def test_predicting_into_the_input_folder_works_when_every_output_name_is_free(tmp_path, a_predictor):
    inputs = tmp_path / "in"
    write_input(inputs, "a")
    written = predict_files(a_predictor, inputs, inputs, save_probabilities=True, uncertainty="entropy")
    assert [p.name for p in written] == ["a.nii.gz"]
    assert sorted(p.name for p in inputs.iterdir()) == ["a.json", "a.nii.gz", "a.npz", "a_0000.nii.gz",
                                                        "a_uncertainty.nii.gz", "prediction_info.json"]


def test_two_cases_whose_outputs_share_a_name_are_refused_before_anything_is_written(tmp_path, a_predictor):
    inputs = tmp_path / "in"
    write_input(inputs, "a")
    write_input(inputs, "a_uncertainty")  # its label map a_uncertainty.nii.gz = the uncertainty map of case a
    with pytest.raises(AutoSegNetError, match=r"a_uncertainty\.nii\.gz.*case 'a'.*case 'a_uncertainty'"):
        predict_files(a_predictor, inputs, tmp_path / "out", uncertainty="entropy")
    assert not (tmp_path / "out").exists()


# ----- item 5: NaN / Inf, 2D into 3D ---------------------------------------------------------------------------
@pytest.mark.parametrize("ending", [NII, ".nrrd"])
def test_nan_and_inf_voxels_are_counted_in_a_warning_and_predicted_as_zero(tmp_path, a_predictor, ending, caplog):
    image = blob_image((8, 8, 8))[0]
    clean = image.copy()
    image[0, 0, :3] = np.nan
    image[1, 1, 1] = np.inf
    clean[0, 0, :3] = 0
    clean[1, 1, 1] = 0
    write_input(tmp_path / "in", "a", image, ending)
    write_input(tmp_path / "clean", "a", clean, ending)
    [written] = predict_files(a_predictor, tmp_path / "in", tmp_path / "out")
    predict_files(a_predictor, tmp_path / "clean", tmp_path / "out_clean")
    assert "'a'" in caplog.text and f"a_0000{ending}" in caplog.text
    assert "3 NaN and 1 Inf voxels (of 512)" in caplog.text and "replaced by 0" in caplog.text
    np.testing.assert_array_equal(io_for(ending).read_seg(written)[0],
                                  io_for(ending).read_seg(tmp_path / "out_clean" / f"a{ending}")[0])


@pytest.mark.parametrize("ending", [NII, ".nrrd"])
def test_an_all_nan_image_is_refused_naming_the_case_and_the_others_are_predicted(tmp_path, a_predictor, ending):
    write_input(tmp_path / "in", "a", ending=ending)
    write_input(tmp_path / "in", "b", np.full((8, 8, 8), np.nan), ending)
    with pytest.raises(files.PredictionFailedError, match=r"'b'.*b_0000.*only NaN or Inf"):
        predict_files(a_predictor, tmp_path / "in", tmp_path / "out")
    assert (tmp_path / "out" / f"a{ending}").is_file() and not (tmp_path / "out" / f"b{ending}").exists()


def test_a_2d_image_is_refused_by_a_3d_model_with_the_2d_configuration_named(a_predictor):
    image = blob_image((1, 12, 9))
    with pytest.raises(AutoSegNetError, match=r"case 'x' is 2D \(1 slice\).*3d_fullres.*-c 2d"):
        a_predictor.predict_case(image, geometry(image_dim=2), case_name="x")


def test_a_2d_file_given_to_a_3d_model_fails_before_any_prediction_work(tmp_path, a_predictor, monkeypatch):
    (tmp_path / "in").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(blob_image((1, 12, 9))[0, 0]), str(tmp_path / "in" / "x_0000.nii.gz"))
    monkeypatch.setattr(a_predictor, "_predict", lambda *a, **k: pytest.fail("predicted a 2D image with a 3D model"))
    with pytest.raises(files.PredictionFailedError, match=r"x_0000\.nii\.gz.*2D.*-c 2d"):
        predict_files(a_predictor, tmp_path / "in", tmp_path / "out")


# ----- item 7: messages instead of tracebacks ------------------------------------------------------------------
def test_a_4d_image_is_reported_with_its_case_and_file(tmp_path, a_predictor):
    (tmp_path / "in").mkdir()
    volumes = [sitk.GetImageFromArray(blob_image((8, 8, 8), seed=s)[0]) for s in range(2)]
    sitk.WriteImage(sitk.JoinSeries(volumes), str(tmp_path / "in" / "c_0000.nii.gz"))
    with pytest.raises(files.PredictionFailedError, match=r"case 'c'.*c_0000\.nii\.gz is a 4D image"):
        predict_files(a_predictor, tmp_path / "in", tmp_path / "out")


def _refuse_mkdir_under(monkeypatch, folder: Path) -> None:
    """Make creating ``folder`` (or anything below it) fail as on a read-only parent folder."""
    mkdir = Path.mkdir

    def refusing(self, *args, **kwargs):
        if self == folder or folder in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refusing)


def test_an_unwritable_output_folder_gives_a_message_instead_of_a_traceback(tmp_path, a_model_folder, capsys,
                                                                           monkeypatch):
    write_input(tmp_path / "in", "a")
    _refuse_mkdir_under(monkeypatch, tmp_path / "out")
    assert predict_cli(tmp_path / "in", tmp_path / "out", a_model_folder) == 2
    assert f"cannot write predictions to {tmp_path / 'out'}: permission denied" in capsys.readouterr().err


def test_an_output_path_that_is_a_file_gives_a_message_instead_of_a_traceback(tmp_path, a_model_folder, capsys):
    write_input(tmp_path / "in", "a")
    (tmp_path / "out").write_text("a file, not a folder")
    assert predict_cli(tmp_path / "in", tmp_path / "out", a_model_folder) == 2
    assert f"cannot write predictions to {tmp_path / 'out'}" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_output_folder_gives_a_message_instead_of_a_traceback(tmp_path, a_model_folder, capsys):
    write_input(tmp_path / "in", "a")
    (tmp_path / "out").mkdir(mode=0o555)
    try:
        assert predict_cli(tmp_path / "in", tmp_path / "out", a_model_folder) == 2
    finally:
        (tmp_path / "out").chmod(0o755)
    assert "cannot write predictions to" in capsys.readouterr().err


# ----- item 10: one bad case does not stop the batch -----------------------------------------------------------
def test_an_unreadable_case_does_not_stop_the_others_and_is_listed_at_the_end(tmp_path, a_model_folder, capsys,
                                                                             caplog):
    inputs = tmp_path / "in"
    write_input(inputs, "a")
    (inputs / "b_0000.nii.gz").write_bytes(b"this is not an image")
    write_input(inputs, "c")
    assert predict_cli(inputs, tmp_path / "out", a_model_folder) == 1
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == ["a.nii.gz", "c.nii.gz"]
    events = json_events(capsys.readouterr().out)
    cases = [e for e in events if e["event"] == "case"]
    assert [(e["case"], e["index"], e.get("status", "ok")) for e in cases] == [("a", 1, "ok"), ("b", 2, "failed"),
                                                                               ("c", 3, "ok")]
    assert cases[1]["file"] == str(inputs / "b_0000.nii.gz") and "Cannot read image" in cases[1]["error"]
    done = events[-1]
    assert (done["event"], done["status"], done["cases"], done["failed"], done["total"]) == ("done", "failed", 2, 1,
                                                                                          3)
    assert done["failures"] == [{"case": "b", "file": str(inputs / "b_0000.nii.gz"), "error": cases[1]["error"]}]
    assert "1 of 3 cases failed" in caplog.text and "b_0000.nii.gz" in caplog.text.split("1 of 3 cases failed")[1]


def test_predict_files_raises_after_predicting_the_rest_and_the_error_lists_each_failure(tmp_path, a_predictor):
    write_input(tmp_path / "in", "a")
    (tmp_path / "in" / "b_0000.nii.gz").write_bytes(b"")
    with pytest.raises(files.PredictionFailedError) as caught:
        predict_files(a_predictor, tmp_path / "in", tmp_path / "out")
    assert [p.name for p in caught.value.written] == ["a.nii.gz"]
    assert [(f.case, f.file.name) for f in caught.value.failures] == [("b", "b_0000.nii.gz")]
    assert "b_0000.nii.gz" in str(caught.value) and "1 of 2 cases failed" in str(caught.value)
