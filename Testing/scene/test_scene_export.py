"""Scene -> raw dataset: files equal the nodes voxel for voxel, geometry in LPS, stable labels, incremental."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.export import export_training_set, verify_summary
from AutoSegNetSceneLib.settings import DatasetSettings
from AutoSegNetSceneLib.synthetic import add_synthetic_case, synthetic_arrays

from AutoSegNetLib.dataset import RawDataset
from AutoSegNetLib.errors import AutoSegNetError
from Testing.scene._helpers_slicer import PLACEMENTS, add_segmentation, add_volume, node_summary


def settings(workspace, channels=("CT",)):
    return DatasetSettings(workspace, 7, "Scene", tuple(channels))


def read_back(workspace, channels=("CT",)):
    raw = RawDataset.open(settings(workspace, channels).raw_folder)
    return raw, {case.name: raw.read_case(case) for case in raw.training_cases()}


@pytest.mark.parametrize("placement", ["identity", "oblique", "permuted_flipped", "axial_LPS_like_DICOM"])
def test_exported_files_equal_the_nodes_voxel_for_voxel_with_the_volume_geometry(
        a_scene, a_training_set, a_workspace, placement):
    volume, segmentation, labels = add_synthetic_case(a_scene, "p1", ijk_to_ras=PLACEMENTS[placement])
    a_training_set.add_case([volume], segmentation)
    report = export_training_set(a_training_set, settings(a_workspace))
    assert (report.written, report.warnings) == (["case_0001"], [])
    raw, cases = read_back(a_workspace)
    image, seg, geometry = cases["case_0001"]
    assert np.array_equal(image[0], volumes.volume_array(volume))
    assert np.array_equal(seg, labels)
    assert geometry.differences(volumes.volume_geometry(volume)) == []
    label_file = sitk.ReadImage(str(raw.training_cases()[0].label))
    ras = volumes.ijk_to_ras(volume) @ [3, 2, 1, 1.0]  # voxel (i, j, k) = (3, 2, 1) in RAS ...
    assert label_file.TransformIndexToPhysicalPoint((3, 2, 1)) == pytest.approx(ras[:3] * [-1, -1, 1], abs=1e-4)


def test_dataset_json_lists_channels_labels_and_the_case_count(a_scene, a_training_set, a_workspace):
    for index in range(2):
        volume, segmentation, _ = add_synthetic_case(a_scene, f"p{index}", seed=index)
        a_training_set.add_case([volume], segmentation)
    export_training_set(a_training_set, settings(a_workspace))
    raw, _ = read_back(a_workspace)
    data = json.loads((raw.folder / "dataset.json").read_text())
    assert data["channel_names"] == {"0": "CT"} and data["file_ending"] == ".nii.gz"
    assert data["labels"] == {"background": 0, "ball": 1, "box": 2}
    assert data["numTraining"] == 2 and sorted(data["autosegnet"]["case_hashes"]) == ["case_0001", "case_0002"]
    assert sorted(p.name for p in (raw.folder / "imagesTr").iterdir()) == ["case_0001_0000.nii.gz",
                                                                           "case_0002_0000.nii.gz"]


def test_multi_channel_cases_write_one_file_per_channel(a_scene, a_training_set, a_workspace):
    first, segmentation, labels = add_synthetic_case(a_scene, "t1")
    second = add_volume(a_scene, (volumes.volume_array(first) * 2).astype(np.int16), volumes.ijk_to_ras(first), "t2")
    a_training_set.add_case([first, second], segmentation)
    export_training_set(a_training_set, settings(a_workspace, ("T1", "T2")))
    _, cases = read_back(a_workspace, ("T1", "T2"))
    image, seg, _ = cases["case_0001"]
    assert image.shape[0] == 2 and np.array_equal(image[1], volumes.volume_array(second))
    assert np.array_equal(seg, labels)


def test_a_missing_segment_is_an_empty_label_and_values_do_not_shift(a_scene, a_training_set, a_workspace):
    volume1, segmentation1, labels1 = add_synthetic_case(a_scene, "p1", names={1: "liver", 2: "kidney"})
    a_training_set.add_case([volume1], segmentation1)
    volume2 = add_volume(a_scene, np.zeros((12, 24, 20), np.int16), volumes.ijk_to_ras(volume1), "p2")
    only_kidney = (labels1 == 2).astype(np.uint8)
    a_training_set.add_case([volume2], add_segmentation(a_scene, only_kidney, {1: "kidney"}, volume2))
    export_training_set(a_training_set, settings(a_workspace))
    _, cases = read_back(a_workspace)
    assert np.array_equal(cases["case_0002"][1], only_kidney * 2)  # kidney keeps value 2


def test_a_segment_added_later_gets_the_next_value_at_export(a_scene, a_training_set, a_workspace):
    volume, segmentation, labels = add_synthetic_case(a_scene, "p1")
    a_training_set.add_case([volume], segmentation)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("", "tumour")
    mask = np.zeros_like(labels)
    mask[5, 5, 5] = 1
    tumour = add_segmentation(a_scene, mask, {1: "tumour"}, volume, "tumour")
    segmentation.GetSegmentation().CopySegmentFromSegmentation(
        tumour.GetSegmentation(), tumour.GetSegmentation().GetNthSegmentID(0), True)
    segmentation.GetSegmentation().RemoveSegment(segment_id)
    report = export_training_set(a_training_set, settings(a_workspace))
    _, cases = read_back(a_workspace)
    assert a_training_set.labels.as_dict() == {"ball": 1, "box": 2, "tumour": 3}
    assert cases["case_0001"][1][5, 5, 5] == 3 and report.warnings == []


def test_a_renamed_segment_becomes_a_new_label_with_a_warning(a_scene, a_training_set, a_workspace):
    volume, segmentation, labels = add_synthetic_case(a_scene, "p1")
    a_training_set.add_case([volume], segmentation)
    segmentation.GetSegmentation().GetNthSegment(1).SetName("cube")
    report = export_training_set(a_training_set, settings(a_workspace))
    assert a_training_set.labels.as_dict() == {"ball": 1, "box": 2, "cube": 3}
    assert any("renamed to 'cube'" in w for w in report.warnings)
    assert any("'box' (value 2) has no segment" in w for w in report.warnings)
    _, cases = read_back(a_workspace)
    assert np.array_equal(cases["case_0001"][1], np.where(labels == 2, 3, labels))


def test_a_segmentation_on_a_coarser_grid_is_resampled_onto_the_volume_with_a_warning(
        a_scene, a_training_set, a_workspace):
    volume = add_volume(a_scene, np.zeros((4, 6, 8), np.int16))  # 1 mm voxels, centres at 0, 1, 2, ...
    coarse = np.zeros((2, 3, 4), np.uint8)
    coarse[0, 1, 2], coarse[1, 2, 3] = 1, 1
    coarse_grid = np.diag([2.0, 2.0, 2.0, 1.0])
    coarse_grid[:3, 3] = 0.5  # each 2 mm voxel covers exactly 2 x 2 x 2 volume voxels
    labelmap = add_volume(a_scene, coarse, coarse_grid, "coarse", "vtkMRMLLabelMapVolumeNode")
    a_training_set.add_case([volume], labelmap)
    report = export_training_set(a_training_set, settings(a_workspace))
    assert any("resampled onto the volume's grid" in w for w in report.warnings)
    _, cases = read_back(a_workspace)
    assert np.array_equal(cases["case_0001"][1], np.kron(coarse, np.ones((2, 2, 2), np.uint8)))


def test_a_labelmap_on_the_volume_grid_exports_without_warning(a_scene, a_training_set, a_workspace):
    volume, _, labels = add_synthetic_case(a_scene, "p1")
    labelmap = add_volume(a_scene, labels * 3, volumes.ijk_to_ras(volume), "lm", "vtkMRMLLabelMapVolumeNode")
    a_training_set.add_case([volume], labelmap)
    report = export_training_set(a_training_set, settings(a_workspace))
    assert report.warnings == [] and a_training_set.labels.as_dict() == {"Label_3": 1, "Label_6": 2}
    _, cases = read_back(a_workspace)
    assert np.array_equal(cases["case_0001"][1], labels)


def test_where_segments_overlap_the_higher_label_value_wins(a_scene, a_training_set, a_workspace):
    volume = add_volume(a_scene, np.zeros((3, 4, 5), np.int16))
    first = np.zeros((3, 4, 5), np.uint8)
    first[:, :2] = 1
    second = np.zeros((3, 4, 5), np.uint8)
    second[:, 1:3] = 1
    segmentation = add_segmentation(a_scene, first, {1: "low"}, volume)
    other = add_segmentation(a_scene, second, {1: "high"}, volume, "other")
    segmentation.GetSegmentation().CopySegmentFromSegmentation(
        other.GetSegmentation(), other.GetSegmentation().GetNthSegmentID(0), False)
    a_training_set.add_case([volume], segmentation)
    export_training_set(a_training_set, settings(a_workspace))
    _, cases = read_back(a_workspace)
    expected = np.zeros((3, 4, 5), np.uint8)
    expected[:, :2], expected[:, 1:3] = 1, 2
    assert np.array_equal(cases["case_0001"][1], expected)


def test_unchanged_cases_are_not_rewritten_and_removed_cases_are_deleted(a_scene, a_training_set, a_workspace):
    nodes = [add_synthetic_case(a_scene, f"p{i}", seed=i) for i in range(3)]
    for volume, segmentation, _ in nodes:
        a_training_set.add_case([volume], segmentation)
    first = export_training_set(a_training_set, settings(a_workspace))
    folder = settings(a_workspace).raw_folder
    stamp = (folder / "imagesTr" / "case_0001_0000.nii.gz").stat().st_mtime_ns
    changed, _ = synthetic_arrays(seed=99)
    slicer.util.updateVolumeFromArray(nodes[1][0], changed)
    a_training_set.remove_case(nodes[2][0])
    second = export_training_set(a_training_set, settings(a_workspace))
    assert first.written == ["case_0001", "case_0002", "case_0003"]
    assert (second.written, second.unchanged, second.removed) == (["case_0002"], ["case_0001"], ["case_0003"])
    assert (folder / "imagesTr" / "case_0001_0000.nii.gz").stat().st_mtime_ns == stamp
    assert not (folder / "labelsTr" / "case_0003.nii.gz").exists()
    _, cases = read_back(a_workspace)
    assert sorted(cases) == ["case_0001", "case_0002"] and np.array_equal(cases["case_0002"][0][0], changed)
    assert nodes[1][0].GetAttribute("AutoSegNet.CaseStatus") == "exported"


def test_export_leaves_no_temporary_nodes_behind(a_scene, a_training_set, a_workspace):
    volume, _, labels = add_synthetic_case(a_scene, "p1")
    labelmap = add_volume(a_scene, labels, volumes.ijk_to_ras(volume), "lm", "vtkMRMLLabelMapVolumeNode")
    a_training_set.add_case([volume], labelmap)
    before = node_summary(a_scene)
    export_training_set(a_training_set, settings(a_workspace))
    assert node_summary(a_scene) == before


def test_channels_on_different_grids_are_refused_with_advice(a_scene, a_training_set, a_workspace):
    first, segmentation, _ = add_synthetic_case(a_scene, "t1")
    second = add_volume(a_scene, np.zeros((12, 24, 20), np.int16), np.eye(4), "t2")
    a_training_set.add_case([first, second], segmentation)
    with pytest.raises(AutoSegNetError, match="Resample it onto the first channel"):
        export_training_set(a_training_set, settings(a_workspace, ("T1", "T2")))


def test_a_case_with_the_wrong_number_of_channels_is_refused(a_scene, a_training_set, a_workspace):
    volume, segmentation, _ = add_synthetic_case(a_scene, "p1")
    a_training_set.add_case([volume], segmentation)
    with pytest.raises(AutoSegNetError, match="has 1 channel volume"):
        export_training_set(a_training_set, settings(a_workspace, ("T1", "T2")))


def test_exporting_an_empty_training_set_says_how_to_add_cases(a_training_set, a_workspace):
    with pytest.raises(AutoSegNetError, match="Add as training case"):
        export_training_set(a_training_set, settings(a_workspace))


def test_verify_summary_lists_every_problem_of_the_engine_report(tmp_path):
    report = {"ok": False, "num_errors": 1, "num_warnings": 1, "problems": [
        {"severity": "error", "case": "case_0001", "file": "labelsTr/case_0001.nii.gz", "code": "label_values",
         "message": "value 5 is not declared"},
        {"severity": "warning", "case": None, "file": None, "code": "empty_label", "message": "label 'x' is empty"}]}
    (tmp_path / "r.json").write_text(json.dumps(report))
    assert verify_summary(tmp_path / "r.json", "failed").splitlines() == [
        "Dataset check FAILED: 1 error(s), 1 warning(s).",
        "ERROR label_values: [case_0001] labelsTr/case_0001.nii.gz: value 5 is not declared",
        "WARNING empty_label: label 'x' is empty",
    ]
    assert "did not complete" in verify_summary(tmp_path / "missing.json", "failed", "crashed")
