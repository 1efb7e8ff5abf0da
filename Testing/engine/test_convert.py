"""Converters: MSD, nnU-Net v1 and image/label folders -> raw datasets that verify clean."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _helpers_dataset import (
    converted_hippocampus,
    hippocampus_cases,
    msd_hippocampus_subset,
    shared,
    tree_digest,
)
from PIL import Image

from AutoSegNetLib.cli import main
from AutoSegNetLib.cli.convert import parse_label_map
from AutoSegNetLib.dataset import DatasetJson, RawDataset
from AutoSegNetLib.dataset.convert_folders import convert_folders
from AutoSegNetLib.dataset.convert_msd import convert_msd
from AutoSegNetLib.dataset.convert_nnunet_v1 import convert_nnunet_v1
from AutoSegNetLib.dataset.verify import verify_dataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.workspace import Workspace


@pytest.fixture
def a_workspace(tmp_path) -> Workspace:
    return Workspace.at(tmp_path / "ws")


def _subset(tmp_path: Path, folder: Path, names: list[str], sub: str) -> Path:
    target = tmp_path / "src" / sub
    target.mkdir(parents=True)
    for name in names:
        shutil.copyfile(folder / name, target / name)
    return target


def _isbi_subset(tmp_path: Path, names: list[str]) -> tuple[Path, Path]:
    isbi = shared("ISBI2012_EM_membrane")
    return _subset(tmp_path, isbi / "image", names, "image"), _subset(tmp_path, isbi / "label", names, "label")


# ----- MSD ---------------------------------------------------------------------------------------------
def test_msd_hippocampus_becomes_dataset004_with_byte_identical_files(tmp_path, a_workspace):
    source = msd_hippocampus_subset(tmp_path, 10)
    before = tree_digest(source)
    result = convert_msd(a_workspace, source, num_workers=2)
    assert result.folder == a_workspace.raw / "Dataset004_Hippocampus"
    assert (result.num_training, result.num_test, result.files_copied, result.files_written) == (10, 0, 20, 0)
    assert tree_digest(source) == before
    data = json.loads((result.folder / "dataset.json").read_text())
    assert {k: data[k] for k in ("channel_names", "labels", "numTraining", "file_ending")} == {
        "channel_names": {"0": "MRI"}, "labels": {"background": 0, "Anterior": 1, "Posterior": 2},
        "numTraining": 10, "file_ending": ".nii.gz"}
    assert data["name"] == "Hippocampus" and "modality" not in data and "training" not in data
    cases = hippocampus_cases(10)
    assert sorted(p.name for p in (result.folder / "imagesTr").iterdir()) == [f"{c}_0000.nii.gz" for c in cases]
    for case in cases:
        assert (result.folder / "imagesTr" / f"{case}_0000.nii.gz").read_bytes() == \
            (source / "imagesTr" / f"{case}.nii.gz").read_bytes()
        assert (result.folder / "labelsTr" / f"{case}.nii.gz").read_bytes() == \
            (source / "labelsTr" / f"{case}.nii.gz").read_bytes()
    assert not (result.folder / "imagesTs").exists()
    assert verify_dataset(result.folder).problems == []


def test_msd_hidden_and_unlisted_files_are_left_out(tmp_path, a_workspace, caplog):
    source = msd_hippocampus_subset(tmp_path, 2)
    (source / "imagesTr" / f"._{hippocampus_cases(1)[0]}.nii.gz").write_bytes(b"\0\5resource fork")
    shutil.copyfile(source / "imagesTr" / f"{hippocampus_cases(1)[0]}.nii.gz", source / "imagesTr" / "extra.nii.gz")
    result = convert_msd(a_workspace, source)
    assert result.num_training == 2 and len(list((result.folder / "imagesTr").iterdir())) == 2
    assert "not listed in dataset.json's 'training' and are left out: extra.nii.gz" in caplog.text


def _synthetic_msd_task(tmp_path: Path, channels: int = 3, cases: int = 2) -> tuple[Path, np.ndarray]:
    """Task07_Synthetic with 4D (x, y, z, channel) int16 images, 3D labels and one 4D test image."""
    source = tmp_path / "Task07_Synthetic"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (source / sub).mkdir(parents=True)
    rng = np.random.default_rng(1)
    volumes = rng.integers(-1000, 1000, (channels, 4, 5, 6)).astype(np.int16)  # (T, Z, Y, X)
    direction4 = np.eye(4)
    direction4[:3, :3] = [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]
    for name, folder in [(f"case_{i}", "imagesTr") for i in range(cases)] + [("test_0", "imagesTs")]:
        image = sitk.JoinSeries([sitk.GetImageFromArray(v) for v in volumes])  # 4D scalar, ITK size (6, 5, 4, T)
        image.SetSpacing((0.8, 0.9, 2.5, 1.0))
        image.SetOrigin((10.0, -20.0, 30.0, 0.0))
        image.SetDirection(direction4.ravel().tolist())
        sitk.WriteImage(image, str(source / folder / f"{name}.nii.gz"))
        if folder == "imagesTr":
            label = sitk.GetImageFromArray((volumes[0] > 0).astype(np.uint8))
            label.SetSpacing((0.8, 0.9, 2.5))
            label.SetOrigin((10.0, -20.0, 30.0))
            label.SetDirection([0, 1, 0, -1, 0, 0, 0, 0, 1])
            sitk.WriteImage(label, str(source / "labelsTr" / f"{name}.nii.gz"))
    meta = {"name": "Synthetic", "tensorImageSize": "4D",
            "modality": {str(c): f"M{c}" for c in range(channels)}, "labels": {"0": "background", "1": "thing"},
            "numTraining": cases, "numTest": 1,
            "training": [{"image": f"./imagesTr/case_{i}.nii.gz", "label": f"./labelsTr/case_{i}.nii.gz"}
                         for i in range(cases)],
            "test": ["./imagesTs/test_0.nii.gz"]}
    (source / "dataset.json").write_text(json.dumps(meta))
    return source, volumes


def test_msd_4d_images_are_split_into_one_file_per_channel_with_3d_geometry(tmp_path, a_workspace):
    source, volumes = _synthetic_msd_task(tmp_path)
    result = convert_msd(a_workspace, source)
    assert result.folder.name == "Dataset007_Synthetic" and (result.num_training, result.num_test) == (2, 1)
    dj = DatasetJson.load(result.folder)
    assert dj.channel_names == {"0": "M0", "1": "M1", "2": "M2"} and dj.labels == {"background": 0, "thing": 1}
    assert "tensorImageSize" not in dj.metadata
    for sub, case in (("imagesTr", "case_1"), ("imagesTs", "test_0")):
        for channel in range(3):
            itk = sitk.ReadImage(str(result.folder / sub / f"{case}_{channel:04d}.nii.gz"))
            assert itk.GetDimension() == 3 and itk.GetPixelID() == sitk.sitkInt16
            np.testing.assert_array_equal(sitk.GetArrayFromImage(itk), volumes[channel])
            assert itk.GetSpacing() == pytest.approx((0.8, 0.9, 2.5))
            assert itk.GetOrigin() == pytest.approx((10.0, -20.0, 30.0))
            assert itk.GetDirection() == pytest.approx((0, 1, 0, -1, 0, 0, 0, 0, 1))
    assert [c.name for c in RawDataset.open(result.folder).test_cases()] == ["test_0"]
    report = verify_dataset(result.folder)
    assert report.problems == []


def test_msd_with_fewer_channels_than_modalities_fails_and_leaves_nothing_behind(tmp_path, a_workspace):
    source, _ = _synthetic_msd_task(tmp_path, channels=2)
    meta = json.loads((source / "dataset.json").read_text())
    meta["modality"] = {"0": "T1", "1": "T2", "2": "FLAIR"}
    (source / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(AutoSegNetError, match=r"declares 3 modalities.*case_0 \(2\), case_1 \(2\), test_0 \(2\)"):
        convert_msd(a_workspace, source)
    assert list(a_workspace.raw.iterdir()) == []


def test_an_unreadable_source_image_fails_the_conversion_without_a_half_dataset(tmp_path, a_workspace):
    source, _ = _synthetic_msd_task(tmp_path)
    (source / "imagesTr" / "case_1.nii.gz").write_bytes(b"not an image")
    with pytest.raises(AutoSegNetError, match="Cannot read image .*case_1.nii.gz"):
        convert_msd(a_workspace, source, num_workers=2)
    assert list(a_workspace.raw.iterdir()) == []


def test_every_missing_listed_file_is_named_at_once(tmp_path, a_workspace):
    source = msd_hippocampus_subset(tmp_path, 4)
    first, second = hippocampus_cases(2)
    (source / "labelsTr" / f"{first}.nii.gz").unlink()
    (source / "imagesTr" / f"{second}.nii.gz").unlink()
    with pytest.raises(AutoSegNetError, match=rf"2 training files .* do not exist: .*imagesTr/{second}.nii.gz"
                                              rf"|2 training files .* do not exist: .*labelsTr/{first}.nii.gz"):
        convert_msd(a_workspace, source)


def test_an_existing_dataset_is_refused_unless_overwrite_is_asked(tmp_path, a_workspace):
    source = msd_hippocampus_subset(tmp_path, 2)
    folder = convert_msd(a_workspace, source).folder
    (folder / "marker").write_text("old")
    with pytest.raises(AutoSegNetError, match="Dataset004_Hippocampus already exists .* --overwrite"):
        convert_msd(a_workspace, source)
    assert (folder / "marker").exists()
    assert convert_msd(a_workspace, source, overwrite=True).folder == folder
    assert not (folder / "marker").exists() and len(list((folder / "imagesTr").iterdir())) == 2
    assert sorted(p.name for p in a_workspace.raw.iterdir()) == ["Dataset004_Hippocampus"]


def test_an_id_used_by_another_dataset_is_refused(tmp_path, a_workspace):
    source = msd_hippocampus_subset(tmp_path, 2)
    (a_workspace.raw / "Dataset004_Other").mkdir(parents=True)
    with pytest.raises(AutoSegNetError, match="ID 4 is already used by Dataset004_Other"):
        convert_msd(a_workspace, source)
    assert convert_msd(a_workspace, source, dataset_id=104, name="Hippo").folder.name == "Dataset104_Hippo"


def test_a_folder_not_named_like_a_task_needs_an_id(tmp_path, a_workspace):
    source = msd_hippocampus_subset(tmp_path, 2)
    renamed = source.rename(source.parent / "hippocampus_copy")
    with pytest.raises(AutoSegNetError, match="give one with --id"):
        convert_msd(a_workspace, renamed)
    with pytest.raises(AutoSegNetError, match="give one with --name"):
        convert_msd(a_workspace, renamed, dataset_id=5)
    assert convert_msd(a_workspace, renamed, dataset_id=5, name="Hip").folder.name == "Dataset005_Hip"


def test_a_workspace_inside_the_source_is_refused(tmp_path):
    source = msd_hippocampus_subset(tmp_path, 2)
    with pytest.raises(AutoSegNetError, match="would overlap its source"):
        convert_msd(Workspace.at(source / "ws"), source)
    assert not (source / "ws").exists()


# ----- nnU-Net v1 -------------------------------------------------------------------------------------
def _v1_task(tmp_path: Path, cases: list[str]) -> Path:
    msd = shared("Task04_Hippocampus")
    task = tmp_path / "Task104_Hippo"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True)
    for case in cases[:-1]:
        shutil.copyfile(msd / "imagesTr" / f"{case}.nii.gz", task / "imagesTr" / f"{case}_0000.nii.gz")
        shutil.copyfile(msd / "labelsTr" / f"{case}.nii.gz", task / "labelsTr" / f"{case}.nii.gz")
    shutil.copyfile(msd / "imagesTr" / f"{cases[-1]}.nii.gz", task / "imagesTs" / f"{cases[-1]}_0000.nii.gz")
    meta = {"name": "Hippo", "tensorImageSize": "3D", "modality": {"0": "MRI"},
            "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}, "numTraining": len(cases) - 1,
            "numTest": 1, "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                                       for c in cases[:-1]], "test": [f"./imagesTs/{cases[-1]}.nii.gz"]}
    (task / "dataset.json").write_text(json.dumps(meta))
    return task


def test_nnunet_v1_task_is_copied_into_the_v2_layout(tmp_path, a_workspace):
    cases = hippocampus_cases(4)
    task = _v1_task(tmp_path, cases)
    before = tree_digest(task)
    result = convert_nnunet_v1(a_workspace, task)
    assert tree_digest(task) == before
    assert result.folder.name == "Dataset104_Hippo"
    assert (result.num_training, result.num_test, result.files_copied) == (3, 1, 7)
    data = json.loads((result.folder / "dataset.json").read_text())
    assert data["channel_names"] == {"0": "MRI"} and data["numTraining"] == 3
    assert data["labels"] == {"background": 0, "Anterior": 1, "Posterior": 2} and data["file_ending"] == ".nii.gz"
    copied = tree_digest(result.folder)
    for rel, digest in before.items():
        if rel != "dataset.json":
            assert copied[rel] == digest
    assert verify_dataset(result.folder).problems == []


def test_nnunet_v1_missing_channel_files_are_named(tmp_path, a_workspace):
    cases = hippocampus_cases(3)
    task = _v1_task(tmp_path, cases)
    meta = json.loads((task / "dataset.json").read_text())
    meta["modality"] = {"0": "T1", "1": "T2"}
    (task / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(AutoSegNetError, match=rf"2 training files .*{cases[0]}_0001.nii.gz"):
        convert_nnunet_v1(a_workspace, task)


# ----- folders ----------------------------------------------------------------------------------------
def test_isbi_png_masks_0_255_convert_with_one_command_and_verify_clean(tmp_path, a_workspace):
    images, labels = _isbi_subset(tmp_path, ["0.png", "1.png", "2.png"])
    before = tree_digest(tmp_path / "src")
    result = convert_folders(a_workspace, images, labels, "ISBIMembrane", 120, label_map={255: 1},
                             label_names=["membrane", "cell"], channel_names=["EM"], num_workers=2)
    assert tree_digest(tmp_path / "src") == before
    dj = DatasetJson.load(result.folder)
    assert dj.channel_names == {"0": "EM"} and dj.labels == {"membrane": 0, "cell": 1} and dj.file_ending == ".png"
    assert (result.folder / "imagesTr" / "0_0000.png").read_bytes() == (images / "0.png").read_bytes()
    seg = io_for(".png").read_seg(result.folder / "labelsTr" / "0.png")[0]
    source = io_for(".png").read_seg(labels / "0.png")[0]
    np.testing.assert_array_equal(seg, (source == 255).astype(np.uint8))
    assert verify_dataset(result.folder).problems == []


def test_drive_rgb_tiff_and_gif_masks_convert_with_one_command_and_verify_clean(tmp_path, a_workspace):
    drive = shared("DRIVE")
    images = _subset(tmp_path, drive / "training" / "images", ["21_training.tif", "22_training.tif"], "images")
    masks = _subset(tmp_path, drive / "training" / "1st_manual", ["21_manual1.gif", "22_manual1.gif"], "masks")
    tests = _subset(tmp_path, drive / "test" / "images", ["01_test.tif"], "test")
    result = convert_folders(a_workspace, images, masks, "DRIVE", 121, image_suffix="_training",
                             label_suffix="_manual1", label_map={255: 1}, label_names=["background", "vessel"],
                             test_images=tests, test_image_suffix="_test")
    dj = DatasetJson.load(result.folder)
    assert dj.channel_names == {"0": "R", "1": "G", "2": "B"} and dj.file_ending == ".tif"
    assert sorted(p.name for p in (result.folder / "imagesTr").iterdir()) == ["21_0000.tif", "22_0000.tif"]
    assert sorted(p.name for p in (result.folder / "labelsTr").iterdir()) == ["21.tif", "22.tif"]
    assert [p.name for p in (result.folder / "imagesTs").iterdir()] == ["01_0000.tif"]
    image, seg, _ = RawDataset.open(result.folder).read_case(RawDataset.open(result.folder).training_cases()[0])
    assert image.shape == (3, 1, 584, 565) and set(np.unique(seg)) == {0, 1}
    assert verify_dataset(result.folder).problems == []


def test_nrrd_image_label_pairs_in_one_folder_convert_by_suffix(tmp_path, a_workspace):
    radiomics = shared("pyradiomics_testcases")
    names = [f"{c}_{k}.nrrd" for c in ("brain1", "breast1") for k in ("image", "label")]
    folder = _subset(tmp_path, radiomics, names, "radiomics")
    result = convert_folders(a_workspace, folder, folder, "Tumours", 130, image_suffix="_image",
                             label_suffix="_label", label_names=["background", "tumour"], channel_names=["MRI"])
    assert sorted(p.name for p in (result.folder / "imagesTr").iterdir()) == ["brain1_0000.nrrd",
                                                                              "breast1_0000.nrrd"]
    assert (result.folder / "imagesTr" / "brain1_0000.nrrd").read_bytes() == (folder / "brain1_image.nrrd").read_bytes()
    report = verify_dataset(result.folder)
    assert report.errors == []
    # the real breast case is stored LPS while brain1 is LAS: worth a warning, not an error
    assert report.codes() <= {("breast1", "orientation_differs"), ("brain1", "orientation_differs")}


def test_label_values_that_are_not_consecutive_get_a_renumbering_suggestion(tmp_path, a_workspace):
    radiomics = shared("pyradiomics_testcases")
    folder = _subset(tmp_path, radiomics, ["prostate_phantom_subvolume.nrrd",
                                           "prostate_phantom_subvolume-label.nrrd"], "phantom")
    with pytest.raises(AutoSegNetError, match=r"values \[0, 1, 7, 8, 9\].*--map-labels 7=2,8=3,9=4"):
        convert_folders(a_workspace, folder, folder, "Phantom", 131, label_suffix="-label")
    assert list(a_workspace.raw.iterdir()) == []
    result = convert_folders(a_workspace, folder, folder, "Phantom", 131, label_suffix="-label",
                             label_map={7: 2, 8: 3, 9: 4})
    assert DatasetJson.load(result.folder).labels == {"background": 0, "label_1": 1, "label_2": 2, "label_3": 3,
                                                      "label_4": 4}
    assert verify_dataset(result.folder).problems == []


def test_images_and_labels_that_do_not_pair_up_are_named(tmp_path, a_workspace):
    isbi = shared("ISBI2012_EM_membrane")
    images = _subset(tmp_path, isbi / "image", ["0.png", "1.png", "2.png"], "image")
    labels = _subset(tmp_path, isbi / "label", ["0.png", "1.png", "5.png"], "label")
    with pytest.raises(AutoSegNetError, match=r"1 cases \(2\) in .* have no label.*1 cases \(5\) in .* have no image"):
        convert_folders(a_workspace, images, labels, "ISBI", 120, label_map={255: 1})
    result = convert_folders(a_workspace, images, labels, "ISBI", 120, label_map={255: 1}, ignore_unmatched=True)
    assert result.num_training == 2


@pytest.mark.parametrize("options, message", [
    ({"label_names": ["background"]}, r"names only the values 0..0; map \[1\]"),
    ({"channel_names": ["R", "G"]}, "gives 2 names .* the images have 1 channels"),
    ({"label_names": ["a", "a"]}, "repeats a name"),
    ({"ending": ".jpg"}, "JPEG is lossy"),
    ({"ending": ".xyz"}, "No image reader"),
])
def test_inconsistent_folder_options_are_refused(tmp_path, a_workspace, options, message):
    images, labels = _isbi_subset(tmp_path, ["0.png"])
    with pytest.raises(AutoSegNetError, match=message):
        convert_folders(a_workspace, images, labels, "ISBI", 120, label_map={255: 1}, **options)
    assert not a_workspace.raw.exists() or list(a_workspace.raw.iterdir()) == []


def test_2d_pngs_can_be_stored_as_nifti_and_still_verify_clean(tmp_path, a_workspace):
    images, labels = _isbi_subset(tmp_path, ["3.png"])
    result = convert_folders(a_workspace, images, labels, "ISBI", 120, label_map={255: 1}, ending=".nii.gz")
    itk = sitk.ReadImage(str(result.folder / "imagesTr" / "3_0000.nii.gz"))
    assert itk.GetDimension() == 2 and itk.GetPixelID() == sitk.sitkUInt8
    assert verify_dataset(result.folder).problems == []


def test_grey_and_colour_images_in_one_folder_are_refused(tmp_path, a_workspace):
    drive, isbi = shared("DRIVE"), shared("ISBI2012_EM_membrane")
    images = tmp_path / "mixed" / "images"
    labels = tmp_path / "mixed" / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    shutil.copyfile(drive / "training" / "images" / "21_training.tif", images / "a.tif")
    shutil.copyfile(drive / "training" / "1st_manual" / "21_manual1.gif", labels / "a.gif")
    Image.open(isbi / "image" / "0.png").save(images / "b.tif")
    Image.open(isbi / "label" / "0.png").save(labels / "b.gif")
    with pytest.raises(AutoSegNetError, match=r"different numbers of channels \(1 channels: 1 cases \(b\); "
                                              r"3 channels: 1 cases \(a\)\)"):
        convert_folders(a_workspace, images, labels, "Mixed", 140, label_map={255: 1})


# ----- CLI --------------------------------------------------------------------------------------------
def test_convert_cli_exit_codes(tmp_path, capsys):
    source = msd_hippocampus_subset(tmp_path, 2)
    args = ["convert", "msd", str(source), "--workspace", str(tmp_path / "ws"), "--progress", "none", "-np", "1"]
    assert main(args) == 0
    assert (tmp_path / "ws" / "raw" / "Dataset004_Hippocampus" / "dataset.json").is_file()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    with pytest.raises(SystemExit) as caught:
        main(["convert", "folders", "--images", "x", "--labels", "y", "--name", "n", "--id", "1",
              "--map-labels", "255"])
    assert caught.value.code == 2


def test_convert_cli_emits_json_case_and_done_events(tmp_path, capsys):
    source = msd_hippocampus_subset(tmp_path, 3)
    args = ["--progress", "json", "--workspace", str(tmp_path / "ws"), "convert", "msd", str(source), "-np", "1"]
    assert main(args) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["stage", "case", "case", "case", "done"]
    assert events[-1]["num_training"] == 3 and events[-1]["folder"].endswith("Dataset004_Hippocampus")


def test_convert_folders_and_nnunet_v1_from_the_command_line(tmp_path):
    drive = shared("DRIVE")
    images = _subset(tmp_path, drive / "training" / "images", ["23_training.tif"], "images")
    masks = _subset(tmp_path, drive / "training" / "1st_manual", ["23_manual1.gif"], "masks")
    root = tmp_path / "ws"
    assert main(["convert", "folders", "--images", str(images), "--labels", str(masks), "--name", "DRIVE", "--id",
                 "121", "--image-suffix", "_training", "--label-suffix=_manual1", "--map-labels", "255=1",
                 "--label-names", "background", "vessel", "--ending", ".png", "-np", "1", "--workspace", str(root),
                 "--progress", "none"]) == 0
    folder = root / "raw" / "Dataset121_DRIVE"
    assert sorted(p.name for p in folder.rglob("*.png")) == ["23.png", "23_0000.png"]
    assert main(["verify", "121", "--workspace", str(root), "--progress", "none", "-np", "1"]) == 0
    task = _v1_task(tmp_path, hippocampus_cases(2))
    assert main(["convert", "nnunet-v1", str(task), "--id", "105", "-np", "1", "--workspace", str(root),
                 "--progress", "none"]) == 0
    assert (root / "raw" / "Dataset105_Hippo" / "dataset.json").is_file()


def test_label_maps_parse_from_the_command_line():
    assert parse_label_map("255=1") == {255: 1}
    assert parse_label_map("7=2, 8=3,9=4,") == {7: 2, 8: 3, 9: 4}


# ----- full real datasets (slow) ----------------------------------------------------------------------
@pytest.mark.slow
def test_all_208_hippocampus_cases_convert_and_verify_clean(a_workspace):
    source = shared("Task04_Hippocampus")
    before = tree_digest(source)
    result = convert_msd(a_workspace, source, num_workers=2)
    assert (result.folder.name, result.num_training, result.files_copied) == ("Dataset004_Hippocampus", 208, 416)
    report = verify_dataset(result.folder, num_workers=2)
    assert report.num_training_cases == 208 and report.problems == []
    assert tree_digest(source) == before


@pytest.mark.slow
def test_full_isbi_and_drive_convert_and_verify_clean(a_workspace):
    isbi, drive = shared("ISBI2012_EM_membrane"), shared("DRIVE")
    first = convert_folders(a_workspace, isbi / "image", isbi / "label", "ISBIMembrane", 120, label_map={255: 1},
                            label_names=["membrane", "cell"], num_workers=2)
    second = convert_folders(a_workspace, drive / "training" / "images", drive / "training" / "1st_manual", "DRIVE",
                             121, image_suffix="_training", label_suffix="_manual1", label_map={255: 1},
                             test_images=drive / "test" / "images", test_image_suffix="_test", num_workers=2)
    assert (first.num_training, second.num_training, second.num_test) == (30, 20, 20)
    assert verify_dataset(first.folder, num_workers=2).problems == []
    assert verify_dataset(second.folder, num_workers=2).problems == []


def test_helper_builds_a_converted_subset(tmp_path):
    folder = converted_hippocampus(tmp_path, 2)
    assert len(RawDataset.open(folder).training_cases()) == 2
