"""``verify``: deliberately broken copies of real shared data report exactly the expected problems, in one run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _helpers_dataset import converted_hippocampus, shared, tree_digest
from PIL import Image

from AutoSegNetLib.cli import main
from AutoSegNetLib.dataset.convert_folders import convert_folders
from AutoSegNetLib.dataset.problems import ERROR, PROBLEM_CODES, WARNING, Problem
from AutoSegNetLib.dataset.verify import verify_dataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.workspace import Workspace

CASES = 14


def _edit(path: Path, change) -> None:
    """Rewrite a NIfTI file after ``change(sitk_image) -> sitk_image``."""
    sitk.WriteImage(change(sitk.ReadImage(str(path))), str(path))


def _with_array(array_change):
    def change(image: sitk.Image) -> sitk.Image:
        out = sitk.GetImageFromArray(array_change(sitk.GetArrayFromImage(image)))
        out.SetSpacing(image.GetSpacing())
        out.SetOrigin(image.GetOrigin())
        out.SetDirection(image.GetDirection())
        return out
    return change


def _shift_origin(mm: float):
    def change(image: sitk.Image) -> sitk.Image:
        x, y, z = image.GetOrigin()
        image.SetOrigin((x + mm, y, z))
        return image
    return change


def _with_z_spacing(z: float):
    def change(image: sitk.Image) -> sitk.Image:
        image.SetSpacing(image.GetSpacing()[:2] + (z,))
        return image
    return change


def _as_float_with_half(image: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    array[0, 0, 0] = 0.5
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def _permuted_direction(image: sitk.Image) -> sitk.Image:
    image.SetDirection((0.0, -1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    return image


def _two_channel_hippocampus(tmp: Path, count: int) -> Path:
    """``count`` real Hippocampus cases with a second channel (a copy of the first), named c00, c01, ...; clean."""
    folder = converted_hippocampus(tmp, count)
    for index, image in enumerate(sorted((folder / "imagesTr").iterdir())):
        case = image.name[: -len("_0000.nii.gz")]
        name = f"c{index:02d}"
        image.rename(folder / "imagesTr" / f"{name}_0000.nii.gz")
        shutil.copyfile(folder / "imagesTr" / f"{name}_0000.nii.gz", folder / "imagesTr" / f"{name}_0001.nii.gz")
        (folder / "labelsTr" / f"{case}.nii.gz").rename(folder / "labelsTr" / f"{name}.nii.gz")
    meta = json.loads((folder / "dataset.json").read_text())
    meta["channel_names"] = {"0": "MRI", "1": "MRI copy"}
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def two_channel_hippocampus(tmp_path_factory) -> Path:
    """14 cases: one per kind of breakage."""
    return _two_channel_hippocampus(tmp_path_factory.mktemp("hippo"), CASES)


@pytest.fixture(scope="module")
def a_small_hippocampus(tmp_path_factory) -> Path:
    """3 clean cases, for checks that need only a few."""
    return _two_channel_hippocampus(tmp_path_factory.mktemp("small"), 3)


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def test_a_clean_two_channel_copy_of_real_data_has_no_problem(two_channel_hippocampus):
    report = verify_dataset(two_channel_hippocampus)
    assert report.problems == [] and report.ok and report.num_training_cases == CASES


@pytest.fixture
def a_broken_dataset(two_channel_hippocampus, tmp_path) -> Path:
    """One breakage per case (c00 stays clean), plus stray files; see EXPECTED."""
    d = _copy(two_channel_hippocampus, tmp_path)
    images, labels = d / "imagesTr", d / "labelsTr"
    (labels / "c01.nii.gz").unlink()
    _edit(labels / "c02.nii.gz", _with_array(lambda a: np.where(a == 1, 5, a).astype(a.dtype)))
    for channel in ("0000", "0001"):
        _edit(images / f"c03_{channel}.nii.gz", _shift_origin(1.0))
    _edit(labels / "c04.nii.gz", _with_z_spacing(1.5))
    _edit(images / "c05_0000.nii.gz", _with_array(lambda a: np.where(np.arange(a.size).reshape(a.shape) % 97 == 0,
                                                                      np.nan, a.astype(np.float32))))
    (images / "c06_0001.nii.gz").unlink()
    data = (labels / "c07.nii.gz").read_bytes()
    (labels / "c07.nii.gz").write_bytes(data[: len(data) // 2])
    _edit(labels / "c08.nii.gz", _with_array(np.zeros_like))
    for channel in ("0000", "0001"):
        (images / f"c09_{channel}.nii.gz").unlink()
    shutil.copyfile(images / "c10_0000.nii.gz", images / "c10_0002.nii.gz")
    _edit(labels / "c11.nii.gz", _with_array(lambda a: a[:-1]))
    _edit(labels / "c12.nii.gz", _as_float_with_half)
    for path in (images / "c13_0000.nii.gz", images / "c13_0001.nii.gz", labels / "c13.nii.gz"):
        _edit(path, _permuted_direction)
    (images / "notes.txt").write_text("stray")
    (labels / ".DS_Store").write_bytes(b"\0")
    return d


EXPECTED = {
    (None, "num_training_mismatch"),
    (None, "stray_file"),
    ("c01", "missing_label"),
    ("c02", "undeclared_label"),
    ("c03", "origin_mismatch"),
    ("c04", "spacing_mismatch"),
    ("c05", "non_finite_values"),
    ("c06", "missing_channel"),
    ("c07", "unreadable_file"),
    ("c08", "empty_label"),
    ("c09", "label_without_image"),
    ("c10", "extra_channel"),
    ("c11", "shape_mismatch"),
    ("c12", "non_integer_label"),
    ("c13", "orientation_differs"),
}


def test_every_breakage_is_reported_in_one_run_with_nothing_else(a_broken_dataset):
    before = tree_digest(a_broken_dataset)
    report = verify_dataset(a_broken_dataset)
    assert report.codes() == EXPECTED
    assert len(report.problems) == len(EXPECTED) + 1  # two stray files
    assert tree_digest(a_broken_dataset) == before
    assert not report.ok and len(report.warnings) == 4 and report.num_training_cases == CASES - 1
    by_case = {p.case: p for p in report.problems if p.case}
    assert by_case["c08"].severity == WARNING and by_case["c13"].severity == WARNING
    assert by_case["c01"].file == "imagesTr/c01_0000.nii.gz"
    assert by_case["c07"].file == "labelsTr/c07.nii.gz"
    assert by_case["c10"].file == "imagesTr/c10_0002.nii.gz"
    assert sorted(p.file for p in report.problems if p.code == "stray_file") == ["imagesTr/notes.txt",
                                                                                 "labelsTr/.DS_Store"]


def test_problem_messages_carry_the_numbers(a_broken_dataset):
    problems = verify_dataset(a_broken_dataset).problems
    by_case = {p.case: p.message for p in problems if p.case}
    assert "difference [-1, 0, 0]" in by_case["c03"] and "image vs label: origin [" in by_case["c03"]
    assert "spacing [1, 1, 1] vs [1.5, 1, 1] (z, y, x mm)" in by_case["c04"]
    assert "values not declared in dataset.json's labels [0, 1, 2]: 5 (" in by_case["c02"]
    assert "NaN and 0 Inf voxels" in by_case["c05"]
    assert "no imagesTr/c06_0001.nii.gz (channel 1: MRI copy)" in by_case["c06"]
    assert "shape (" in by_case["c11"] and "truncated" in by_case["c07"]
    assert "holds non-integer values (0.5)" in by_case["c12"]
    num_training = next(p for p in problems if p.code == "num_training_mismatch")
    assert num_training.message == f"dataset.json says numTraining {CASES}, but {CASES - 1} training cases were found"


def test_workers_report_exactly_what_a_single_process_reports(a_broken_dataset):
    assert verify_dataset(a_broken_dataset, num_workers=2).problems == verify_dataset(a_broken_dataset).problems


def test_origin_tolerance_is_configurable(a_small_hippocampus, tmp_path):
    d = _copy(a_small_hippocampus, tmp_path)
    _edit(d / "labelsTr" / "c00.nii.gz", _shift_origin(0.05))
    assert verify_dataset(d).codes() == {("c00", "origin_mismatch")}
    assert verify_dataset(d, tolerance=0.1).problems == []


def test_an_invalid_dataset_json_is_the_only_problem_reported(a_small_hippocampus, tmp_path):
    d = _copy(a_small_hippocampus, tmp_path)
    meta = json.loads((d / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "Anterior": 1, "Posterior": 3}
    (d / "dataset.json").write_text(json.dumps(meta))
    (problem,) = verify_dataset(d).problems
    assert problem.code == "invalid_dataset_json" and "field 'labels'" in problem.message


def test_missing_labels_folder_reports_the_folder_and_every_case(a_small_hippocampus, tmp_path):
    d = _copy(a_small_hippocampus, tmp_path)
    shutil.rmtree(d / "labelsTr")
    report = verify_dataset(d)
    assert report.codes() == {(None, "missing_folder")} | {(f"c{i:02d}", "missing_label") for i in range(3)}


def test_mixed_2d_and_3d_cases_are_an_error(a_small_hippocampus, tmp_path):
    d = _copy(a_small_hippocampus, tmp_path)

    def to_2d(image: sitk.Image) -> sitk.Image:
        return image[:, :, image.GetSize()[2] // 2]
    for path in (d / "imagesTr" / "c00_0000.nii.gz", d / "imagesTr" / "c00_0001.nii.gz", d / "labelsTr" / "c00.nii.gz"):
        _edit(path, to_2d)
    report = verify_dataset(d)
    assert report.codes() == {(None, "mixed_dimensionality")}
    assert report.problems[0].message.startswith("1 cases 2D, 2 cases 3D; these differ from the usual 3D: c00")


def test_explicit_file_lists_with_missing_files_are_reported(a_small_hippocampus, tmp_path):
    d = _copy(a_small_hippocampus, tmp_path)
    meta = json.loads((d / "dataset.json").read_text())
    meta["numTraining"] = 2
    meta["dataset"] = {
        "a": {"images": ["imagesTr/c00_0000.nii.gz", "imagesTr/c00_0001.nii.gz"], "label": "labelsTr/c00.nii.gz"},
        "b": {"images": ["imagesTr/c01_0000.nii.gz", "imagesTr/gone_0001.nii.gz"], "label": "labelsTr/gone.nii.gz"},
    }
    (d / "dataset.json").write_text(json.dumps(meta))
    report = verify_dataset(d)
    assert report.codes() == {("b", "missing_channel"), ("b", "missing_label")}


@pytest.fixture
def a_broken_isbi_copy(tmp_path) -> Path:
    isbi = shared("ISBI2012_EM_membrane")
    for sub in ("image", "label"):
        (tmp_path / "src" / sub).mkdir(parents=True)
        for name in ("0.png", "1.png", "2.png"):
            shutil.copyfile(isbi / sub / name, tmp_path / "src" / sub / name)
    folder = convert_folders(Workspace.at(tmp_path / "ws"), tmp_path / "src" / "image", tmp_path / "src" / "label",
                             "ISBI", 120, label_map={255: 1}).folder
    shutil.copyfile(isbi / "label" / "1.png", folder / "labelsTr" / "1.png")  # 255 left unmapped
    grey = np.asarray(Image.open(folder / "imagesTr" / "2_0000.png"))
    Image.fromarray(np.stack([grey] * 3, -1)).save(folder / "imagesTr" / "2_0000.png")  # RGB in a grey dataset
    return folder


def test_2d_natural_images_report_undeclared_mask_values_and_wrong_channel_counts(a_broken_isbi_copy):
    report = verify_dataset(a_broken_isbi_copy)
    assert report.codes() == {("1", "undeclared_label"), ("2", "wrong_channel_count")}
    messages = {p.case: p.message for p in report.problems}
    assert "255 (" in messages["1"]
    assert messages["2"] == "imagesTr/2_0000.png hold 3 channel(s); dataset.json's channel_names declares 1"


def test_every_problem_code_has_a_severity_and_a_description():
    assert all(severity in (ERROR, WARNING) and text for severity, text in PROBLEM_CODES.values())
    assert str(Problem(ERROR, "c1", "labelsTr/c1.nii.gz", "missing_label", "gone")) == \
        "ERROR missing_label: [c1] labelsTr/c1.nii.gz: gone"


def test_progress_events_come_per_case_and_at_the_end(two_channel_hippocampus, tmp_path):
    events = []

    class Recorder(ProgressReporter):
        def emit(self, event, **fields):
            events.append({"event": event, **fields})
            return events[-1]

    verify_dataset(two_channel_hippocampus, reporter=Recorder())
    assert [e["event"] for e in events] == ["case"] * CASES + ["done"]
    assert sorted(e["case"] for e in events[:-1]) == [f"c{i:02d}" for i in range(CASES)]
    assert events[-1]["ok"] is True and events[-1]["errors"] == 0 and events[-1]["cases"] == CASES


def test_verify_of_a_folder_that_does_not_exist_is_a_user_error(tmp_path):
    with pytest.raises(AutoSegNetError, match="is not a folder"):
        verify_dataset(tmp_path / "nothing")


# ----- CLI --------------------------------------------------------------------------------------------
def _workspace_with(dataset: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(dataset, root / "raw" / dataset.name)
    return root


def test_verify_cli_exits_0_when_clean_1_with_errors_2_when_unknown(a_small_hippocampus, a_broken_dataset,
                                                                    tmp_path, capsys):
    root = _workspace_with(a_small_hippocampus, tmp_path)
    assert main(["verify", "4", "--workspace", str(root), "--progress", "none", "-np", "1"]) == 0
    assert main(["verify", str(a_broken_dataset), "--progress", "none", "-np", "2"]) == 1
    assert main(["verify", "Prostate", "--workspace", str(root), "--progress", "none"]) == 2
    assert "Datasets found: Dataset004_Hippocampus" in capsys.readouterr().err


def test_verify_cli_writes_a_json_report_and_json_progress(a_broken_dataset, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    assert main(["verify", str(a_broken_dataset), "--report", str(report_path), "--progress", "json",
                 "--tolerance", "0.001", "-np", "1"]) == 1
    report = json.loads(report_path.read_text())
    assert report["ok"] is False and report["tolerance"] == 0.001 and report["num_errors"] == len(EXPECTED) - 3
    assert {(p["case"], p["code"]) for p in report["problems"]} == EXPECTED
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events].count("case") == CASES - 1 and events[-1]["event"] == "done"
    assert events[-1]["errors"] == report["num_errors"]
