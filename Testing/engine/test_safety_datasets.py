"""Issue #14, datasets: training refuses half-preprocessed or stale data, splits follow the case list, the cheap
integrity checks run in every plan-and-preprocess, and bad inputs or read-only workspaces give messages (not
tracebacks) that name the case, the file and the fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _helpers_training import DATASET, raw_workspace, synthetic_case, tiny_workspace

from AutoSegNetLib.cli import main
from AutoSegNetLib.demo.synthetic import write_synthetic_dataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, io_for
from AutoSegNetLib.preprocessing.preprocess_dataset import preprocess_dataset
from AutoSegNetLib.training.fold_setup import prepare_fold
from AutoSegNetLib.training.splits import SPLITS_FILE, kfold_splits
from AutoSegNetLib.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
DEMO = "Dataset900_SyntheticEllipsoids"
CONFIGURATION_FOLDER = Path("preprocessed") / DATASET / "AutoSegNetPlans_3d"


def names(indices) -> list[str]:
    return [f"case_{i:03d}" for i in indices]


def add_raw_cases(workspace: Workspace, indices, seed: int = 1) -> None:
    """Write more raw cases like ``raw_workspace``'s and keep dataset.json's numTraining right."""
    raw = workspace.raw / DATASET
    io, rng, geometry = io_for(".nii.gz"), np.random.default_rng(seed), Geometry(spacing=(1.0, 1.0, 1.0))
    for index in indices:
        image, seg = synthetic_case(rng, (16, 20, 20), with_outside=False)
        io.write_image(image[0] + 3.0, raw / "imagesTr" / f"case_{index:03d}_0000.nii.gz", geometry)
        io.write_seg(seg[0].astype(np.uint8), raw / "labelsTr" / f"case_{index:03d}.nii.gz", geometry)
    fix_num_training(raw)


def remove_raw_case(workspace: Workspace, name: str) -> None:
    raw = workspace.raw / DATASET
    (raw / "imagesTr" / f"{name}_0000.nii.gz").unlink()
    (raw / "labelsTr" / f"{name}.nii.gz").unlink()
    fix_num_training(raw)


def fix_num_training(raw: Path) -> None:
    data = json.loads((raw / "dataset.json").read_text())
    data["numTraining"] = len(list((raw / "imagesTr").glob("*_0000.nii.gz")))
    (raw / "dataset.json").write_text(json.dumps(data))


def fold_cases(workspace: Workspace, fold: int = 0) -> list[str]:
    setup = prepare_fold(workspace, DATASET, "3d_fullres", fold)
    return sorted(setup.train_cases + setup.val_cases)


def edit_image(path: Path, change) -> None:
    sitk.WriteImage(change(sitk.ReadImage(str(path))), str(path))


# ----- item 2: training on half-preprocessed or stale data ----------------------------------------------------
def test_training_refuses_a_configuration_whose_raw_dataset_gained_cases_since_preprocessing(tmp_path):
    workspace = raw_workspace(tmp_path, n_cases=4)
    add_raw_cases(workspace, [4, 5])
    with pytest.raises(AutoSegNetError, match=r"(?s)not up to date.*2 added: case_004, case_005.*"
                                              r"autosegnet preprocess Dataset001_Tiny -c 3d_fullres"):
        prepare_fold(workspace, DATASET, "3d_fullres", 0)


def test_training_refuses_a_configuration_whose_raw_cases_changed_or_left_since_preprocessing(tmp_path):
    workspace = raw_workspace(tmp_path, n_cases=4)
    image = workspace.raw / DATASET / "imagesTr" / "case_001_0000.nii.gz"
    edit_image(image, lambda img: img * 2)
    remove_raw_case(workspace, "case_003")
    with pytest.raises(AutoSegNetError, match=r"(?s)1 removed: case_003.*1 changed: case_001"):
        prepare_fold(workspace, DATASET, "3d_fullres", 0)
    preprocess_dataset(workspace, DATASET, ["3d_fullres"], 0)
    assert fold_cases(workspace) == names(range(3))


def test_training_refuses_preprocessed_data_that_no_run_marked_complete(tmp_path):
    from AutoSegNetLib.preprocessing.manifest import MANIFEST_FILE

    workspace = raw_workspace(tmp_path, n_cases=4)
    (tmp_path / CONFIGURATION_FOLDER / MANIFEST_FILE).unlink()  # e.g. written by an older version, or by hand
    with pytest.raises(AutoSegNetError, match=r"(?s)no record that preprocessing.*finished.*autosegnet preprocess"):
        prepare_fold(workspace, DATASET, "3d_fullres", 0)
    summary = preprocess_dataset(workspace, DATASET, ["3d_fullres"], 0)
    assert summary["3d_fullres"]["preprocessed"] == []  # only the record is written
    assert fold_cases(workspace) == names(range(4))


def test_training_refuses_a_configuration_whose_plans_changed_since_preprocessing(tmp_path):
    workspace = raw_workspace(tmp_path, n_cases=4)
    plans_path = workspace.preprocessed / DATASET / "plans.json"
    plans = json.loads(plans_path.read_text())
    plans["configurations"]["3d_fullres"]["spacing"] = [2.0, 2.0, 2.0]
    plans_path.write_text(json.dumps(plans))
    with pytest.raises(AutoSegNetError, match=r"(?s)preprocessing settings.*changed.*autosegnet preprocess"):
        prepare_fold(workspace, DATASET, "3d_fullres", 0)


def test_a_failed_preprocessing_is_refused_and_after_the_fix_every_case_trains_with_new_splits(tmp_path, capsys):
    """The issue's story: a bad case stops preprocessing after the cases before it; train must refuse; once the
    case is fixed and preprocessing finishes, the automatically written 4-case splits give way to 20 cases."""
    workspace = raw_workspace(tmp_path, n_cases=4)
    assert fold_cases(workspace) == names(range(4))  # writes the automatic 4-case splits
    add_raw_cases(workspace, range(4, 20))
    bad = workspace.raw / DATASET / "labelsTr" / "case_010.nii.gz"
    good = bad.read_bytes()
    edit_image(bad, lambda img: sitk.Cast(img, sitk.sitkUInt8) * 0 + 7)  # label 7 is not declared
    root = ["--workspace", str(tmp_path), "--progress", "none"]
    assert main([*root, "preprocess", "1", "-c", "3d_fullres", "-np", "0"]) == 2
    assert "case_010" in capsys.readouterr().err
    assert main([*root, "train", "1", "3d_fullres", "0", "--device", "cpu", "--epochs", "1", "--iterations", "1",
                 "--val-iterations", "1", "--no-final-validation"]) == 2
    assert "autosegnet preprocess 1 -c 3d_fullres" in capsys.readouterr().err
    bad.write_bytes(good)
    assert main([*root, "preprocess", "1", "-c", "3d_fullres", "-np", "0"]) == 0
    assert fold_cases(workspace) == names(range(20))
    splits = json.loads((workspace.preprocessed / DATASET / SPLITS_FILE).read_text())
    assert splits == kfold_splits(names(range(20)))


def test_automatic_splits_written_by_an_older_version_are_recognised_and_regenerated(tmp_path):
    workspace = raw_workspace(tmp_path, n_cases=4)
    (workspace.preprocessed / DATASET / SPLITS_FILE).write_text(json.dumps(kfold_splits(names(range(4)))))
    add_raw_cases(workspace, range(4, 8))
    preprocess_dataset(workspace, DATASET, ["3d_fullres"], 0)
    assert fold_cases(workspace) == names(range(8))


def test_user_written_splits_are_refused_once_cases_are_added_or_removed_naming_them(tmp_path):
    workspace = raw_workspace(tmp_path, n_cases=4)
    custom = [{"train": ["case_000", "case_001"], "val": ["case_002"]}]  # case_003 held out on purpose
    (workspace.preprocessed / DATASET / SPLITS_FILE).write_text(json.dumps(custom))
    assert fold_cases(workspace) == names(range(3))
    add_raw_cases(workspace, [4])
    preprocess_dataset(workspace, DATASET, ["3d_fullres"], 0)
    with pytest.raises(AutoSegNetError, match=r"(?s)written by hand.*added since: case_004.*delete it"):
        prepare_fold(workspace, DATASET, "3d_fullres", 0)
    remove_raw_case(workspace, "case_004")
    remove_raw_case(workspace, "case_002")
    preprocess_dataset(workspace, DATASET, ["3d_fullres"], 0)
    with pytest.raises(AutoSegNetError, match=r"(?s)names cases that are not preprocessed: case_002"):
        prepare_fold(workspace, DATASET, "3d_fullres", 0)


def test_a_user_edited_automatic_splits_file_is_respected_not_regenerated(tmp_path):
    workspace = tiny_workspace(tmp_path, n_cases=6)
    prepare_fold(workspace, DATASET, "3d_fullres", 0)
    path = workspace.preprocessed / DATASET / SPLITS_FILE
    edited = [{"train": names(range(1, 6)), "val": ["case_000"]}, {"train": names(range(5)), "val": ["case_005"]}]
    path.write_text(json.dumps(edited))
    assert prepare_fold(workspace, DATASET, "3d_fullres", 1).val_cases == ["case_005"]
    assert json.loads(path.read_text()) == edited


# ----- item 5: the cheap integrity checks always run -----------------------------------------------------------
@pytest.fixture
def a_demo_dataset(tmp_path: Path) -> Path:
    """Four synthetic raw cases (``autosegnet demo``'s generator) in ``tmp_path/ws``; returns the raw folder."""
    return write_synthetic_dataset(Workspace.at(tmp_path / "ws").create(), num_cases=4)


def plan_and_preprocess(tmp_path: Path, *extra: str) -> int:
    return main(["--workspace", str(tmp_path / "ws"), "--progress", "none", "plan-and-preprocess", "900", "-c",
                 "3d_fullres", "-np", "0", *extra])


def test_plan_and_preprocess_refuses_a_label_whose_spacing_differs_from_its_image(tmp_path, a_demo_dataset, capsys):
    label = a_demo_dataset / "labelsTr" / "case_002.nii.gz"
    edit_image(label, lambda img: (img.SetSpacing((1.0, 1.0, 3.0)), img)[1])
    assert plan_and_preprocess(tmp_path) == 2
    err = capsys.readouterr().err
    assert "'case_002'" in err and "labelsTr/case_002.nii.gz" in err and "spacing" in err


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_plan_and_preprocess_refuses_an_image_holding_nan_or_inf(tmp_path, a_demo_dataset, capsys, value):
    image = a_demo_dataset / "imagesTr" / "case_001_0000.nii.gz"

    def poison(img: sitk.Image) -> sitk.Image:
        array = sitk.GetArrayFromImage(img)
        array[3, 4, 5:9] = value
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(img)
        return out

    edit_image(image, poison)
    assert plan_and_preprocess(tmp_path) == 2
    err = capsys.readouterr().err
    assert "'case_001'" in err and "imagesTr/case_001_0000.nii.gz" in err
    assert ("4 NaN" if np.isnan(value) else "4 Inf") in err


def test_preprocess_alone_refuses_a_case_that_got_nan_after_planning(tmp_path, a_demo_dataset, capsys):
    assert plan_and_preprocess(tmp_path) == 0
    image = a_demo_dataset / "imagesTr" / "case_003_0000.nii.gz"
    array = np.full((24, 40, 40), np.nan, np.float32)
    io_for(".nii.gz").write_image(array, image, Geometry(spacing=(1.5, 1.0, 1.0), origin=(-20.0, -20.0, -18.0)))
    assert main(["--workspace", str(tmp_path / "ws"), "--progress", "none", "preprocess", "900", "-c", "3d_fullres",
                 "-np", "0"]) == 2
    err = capsys.readouterr().err
    assert "'case_003'" in err and "imagesTr/case_003_0000.nii.gz" in err and "NaN" in err


def test_plan_and_preprocess_refuses_a_wrong_num_training(tmp_path, a_demo_dataset, capsys):
    data = json.loads((a_demo_dataset / "dataset.json").read_text())
    data["numTraining"] = 5
    (a_demo_dataset / "dataset.json").write_text(json.dumps(data))
    assert plan_and_preprocess(tmp_path) == 2
    err = capsys.readouterr().err
    assert "numTraining 5" in err and "4 training cases" in err and "dataset.json" in err


def test_plan_and_preprocess_refuses_a_label_without_an_image(tmp_path, a_demo_dataset, capsys):
    shutil.copyfile(a_demo_dataset / "labelsTr" / "case_000.nii.gz", a_demo_dataset / "labelsTr" / "case_009.nii.gz")
    assert plan_and_preprocess(tmp_path) == 2
    err = capsys.readouterr().err
    assert "labelsTr/case_009.nii.gz" in err and "imagesTr/case_009_0000.nii.gz" in err


def test_plan_and_preprocess_names_the_case_and_file_of_a_4d_image(tmp_path, a_demo_dataset, capsys):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 8, 8), np.float32)),
                    str(a_demo_dataset / "imagesTr" / "case_002_0000.nii.gz"))
    assert plan_and_preprocess(tmp_path) == 2
    err = capsys.readouterr().err
    assert "'case_002'" in err and "imagesTr/case_002_0000.nii.gz" in err


# ----- item 7: messages instead of tracebacks -----------------------------------------------------------------
def small_dataset(root: Path, shape: tuple[int, int, int]) -> Workspace:
    """Three cases of ``shape`` (z, y, x) voxels at 1 mm, label 1 in one corner voxel, Dataset005_Small."""
    workspace = Workspace.at(root).create()
    raw = workspace.raw / "Dataset005_Small"
    io, rng, geometry = io_for(".nii.gz"), np.random.default_rng(0), Geometry(spacing=(1.0, 1.0, 1.0))
    for index in range(3):
        seg = np.zeros(shape, np.uint8)
        seg.flat[0] = 1
        io.write_image(rng.uniform(1, 100, shape).astype(np.float32), raw / "imagesTr" / f"c{index}_0000.nii.gz",
                       geometry)
        io.write_seg(seg, raw / "labelsTr" / f"c{index}.nii.gz", geometry)
    (raw / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MR"}, "labels": {"background": 0, "a": 1},
                                                  "numTraining": 3, "file_ending": ".nii.gz"}))
    return workspace


def test_images_too_small_for_any_network_are_explained_with_the_minimum(tmp_path, capsys):
    small_dataset(tmp_path / "ws", (1, 1, 1))
    assert main(["--workspace", str(tmp_path / "ws"), "--progress", "none", "plan-and-preprocess", "5", "-np",
                 "0"]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and "[1, 1]" in err and "at least 8 voxels" in err and "network spec" not in err


def test_a_3d_dataset_whose_slices_are_too_small_for_2d_is_planned_without_2d(tmp_path, caplog):
    small_dataset(tmp_path / "ws", (40, 6, 6))
    assert main(["--workspace", str(tmp_path / "ws"), "--progress", "none", "plan-and-preprocess", "5", "-np",
                 "0"]) == 0
    plans = json.loads((tmp_path / "ws" / "preprocessed" / "Dataset005_Small" / "plans.json").read_text())
    assert list(plans["configurations"]) == ["3d_fullres"]
    assert "No 2d configuration: The images are too small to plan the 2d configuration" in caplog.text


def run_with_read_only(folder: Path, args: list[str]) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess while ``folder`` cannot be written (chmod; as root, a read-only bind mount in a
    private mount namespace, which ends with the process)."""
    command = [sys.executable, "-m", "AutoSegNetLib", *args]
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        finally:
            folder.chmod(0o755)
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: cannot make a folder read-only")
    script = 'mount --bind -o ro "$0" "$0" || exit 97; exec "$@"'
    result = subprocess.run(["unshare", "-m", "sh", "-c", script, str(folder), *command], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    if result.returncode == 97 or result.stderr.startswith("unshare:"):
        pytest.skip(f"cannot make a read-only bind mount here: {result.stderr.strip()}")
    return result


def assert_explained(result: subprocess.CompletedProcess, path_part: str, workspace_hint: bool = True) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot write" in result.stderr and path_part in result.stderr
    assert ("--workspace" in result.stderr and "AUTOSEGNET_HOME" in result.stderr) == workspace_hint


def test_plan_and_preprocess_in_a_read_only_workspace_says_so(tmp_path, a_demo_dataset):
    result = run_with_read_only(tmp_path / "ws" / "preprocessed", [
        "--workspace", str(tmp_path / "ws"), "plan-and-preprocess", "900", "-c", "3d_fullres", "-np", "0"])
    assert_explained(result, str(tmp_path / "ws" / "preprocessed"))


def test_train_in_a_read_only_results_folder_says_so(tmp_path):
    tiny_workspace(tmp_path)
    result = run_with_read_only(tmp_path / "results", [
        "--workspace", str(tmp_path), "train", "1", "3d_fullres", "0", "--device", "cpu", "--epochs", "1"])
    assert_explained(result, str(tmp_path / "results"))


def test_verify_report_into_a_read_only_folder_says_so(tmp_path, a_demo_dataset):
    (tmp_path / "reports").mkdir()
    report = tmp_path / "reports" / "r.json"
    result = run_with_read_only(tmp_path / "reports", [
        "--workspace", str(tmp_path / "ws"), "verify", "900", "-np", "0", "--report", str(report)])
    assert_explained(result, str(tmp_path / "reports"), workspace_hint=False)
