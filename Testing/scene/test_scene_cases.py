"""Training cases are tagged in the scene, keep stable label values, and survive saving the scene."""

from __future__ import annotations

import json

import numpy as np
import pytest
import slicer
from AutoSegNetSceneLib import cases as cases_module
from AutoSegNetSceneLib.cases import CASE_NAME, LABEL_ROLE, TrainingSet
from AutoSegNetSceneLib.labels import normalise_name
from AutoSegNetSceneLib.synthetic import add_synthetic_case

from AutoSegNetLib.errors import AutoSegNetError
from Testing.scene._helpers_slicer import add_segmentation, add_volume, node_summary


def test_adding_a_case_tags_the_volume_and_references_its_segmentation(a_scene, a_training_set):
    volume, segmentation, _ = add_synthetic_case(a_scene, "patient 1")
    case = a_training_set.add_case([volume], segmentation)
    assert (case.name, case.status, case.segment_names) == ("case_0001", "new", ["ball", "box"])
    assert volume.GetAttribute(CASE_NAME) == "case_0001"
    assert volume.GetNodeReference(LABEL_ROLE) is segmentation
    assert [c.name for c in a_training_set.cases()] == ["case_0001"]
    assert a_training_set.labels.as_dict() == {"ball": 1, "box": 2}


def test_label_values_stay_stable_when_cases_add_and_lack_segments(a_scene, a_training_set):
    volume1, segmentation1, _ = add_synthetic_case(a_scene, "p1", names={1: "liver", 2: "kidney"})
    a_training_set.add_case([volume1], segmentation1)
    volume2, segmentation2, _ = add_synthetic_case(a_scene, "p2", names={1: "spleen", 2: "kidney"})
    a_training_set.add_case([volume2], segmentation2)
    assert a_training_set.labels.as_dict() == {"liver": 1, "kidney": 2, "spleen": 3}
    a_training_set.remove_case(volume1)  # liver only existed in the removed case: it keeps its value
    assert a_training_set.labels.as_dict() == {"liver": 1, "kidney": 2, "spleen": 3}
    assert [c.volume for c in a_training_set.cases()] == [volume2]


def test_re_adding_a_volume_keeps_its_case_name(a_scene, a_training_set):
    volume, segmentation, _ = add_synthetic_case(a_scene, "p1")
    a_training_set.add_case([volume], segmentation)
    other = add_segmentation(a_scene, np.ones((12, 24, 20), np.uint8), {1: "ball"}, volume)
    case = a_training_set.add_case([volume], other, corrected=True)
    assert (case.name, case.status, case.label_node) == ("case_0001", "corrected", other)
    assert len(a_training_set.cases()) == 1


def test_rename_label_renames_the_segments_of_every_case_and_keeps_the_value(a_scene, a_training_set):
    for index in range(2):
        volume, segmentation, _ = add_synthetic_case(a_scene, f"p{index}")
        a_training_set.add_case([volume], segmentation)
    a_training_set.rename_label("box", "cube")
    assert a_training_set.labels.as_dict() == {"ball": 1, "cube": 2}
    assert all(case.segment_names == ["ball", "cube"] for case in a_training_set.cases())
    assert all(a_training_set.renamed_segments(case.label_node) == [] for case in a_training_set.cases())


def test_a_segment_renamed_by_hand_is_reported(a_scene, a_training_set):
    volume, segmentation, _ = add_synthetic_case(a_scene, "p1")
    a_training_set.add_case([volume], segmentation)
    segmentation.GetSegmentation().GetNthSegment(1).SetName("cube")
    assert a_training_set.renamed_segments(segmentation) == [("box", "cube")]


def test_a_labelmap_case_takes_its_names_from_slicers_import(a_scene, a_training_set):
    volume = add_volume(a_scene, np.zeros((4, 5, 6), np.int16))
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[0, 0, 0], labels[1, 1, 1] = 3, 7
    labelmap = add_volume(a_scene, labels, class_name="vtkMRMLLabelMapVolumeNode", name="labels")
    case = a_training_set.add_case([volume], labelmap)
    assert case.segment_names == ["Label_3", "Label_7"]
    assert a_scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0  # temporary one removed


@pytest.mark.parametrize(("volumes", "labels", "message"), [
    ([None], "segmentation", "Select the volume"),
    (["volume"], None, "Select the segmentation"),
    (["volume"], "volume", "neither a segmentation nor a labelmap"),
    (["volume"], "empty", "has no segments"),
])
def test_incomplete_cases_are_refused_with_what_to_do(a_scene, a_training_set, volumes, labels, message):
    volume, segmentation, _ = add_synthetic_case(a_scene, "p1")
    empty = a_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    nodes = {"volume": volume, "segmentation": segmentation, "empty": empty, None: None}
    with pytest.raises(AutoSegNetError, match=message):
        a_training_set.add_case([nodes[v] for v in volumes], nodes[labels])


def test_the_training_set_survives_saving_and_reloading_the_scene(a_scene, a_training_set, tmp_path):
    volume, segmentation, labels = add_synthetic_case(a_scene, "p1")
    a_training_set.add_case([volume], segmentation)
    for node, ending in ((volume, ".nrrd"), (segmentation, ".seg.nrrd")):
        node.AddDefaultStorageNode()
        node.GetStorageNode().SetFileName(str(tmp_path / f"{node.GetID()}{ending}"))
        assert node.GetStorageNode().WriteData(node)
    a_scene.SetRootDirectory(str(tmp_path))
    a_scene.SetURL(str(tmp_path / "scene.mrml"))
    assert a_scene.Commit()

    reloaded = slicer.vtkMRMLScene()
    reloaded.SetRootDirectory(str(tmp_path))
    reloaded.SetURL(str(tmp_path / "scene.mrml"))
    assert reloaded.Import()
    training_set = TrainingSet(reloaded)
    [case] = training_set.cases()
    assert (case.name, case.segment_names) == ("case_0001", ["ball", "box"])
    assert training_set.labels.as_dict() == {"ball": 1, "box": 2}
    assert np.array_equal(slicer.util.arrayFromVolume(case.volume), slicer.util.arrayFromVolume(volume))
    assert json.loads(case.label_node.GetAttribute("AutoSegNet.SegmentNames"))
    reloaded.Clear(1)


# ----- listing cases is cheap: no labelmap import, no voxels read on a refresh ---------------------------------
def names_by_slicers_import(training_set, label_node) -> list[str]:
    """Segment names as the case list gave them before it was made cheap: import, then read the segments."""
    with training_set.as_segmentation(label_node) as segmentation_node:
        segmentation = segmentation_node.GetSegmentation()
        return [normalise_name(segmentation.GetNthSegment(i).GetName())
                for i in range(segmentation.GetNumberOfSegments())]


def colour_table(scene, names: dict[int, str]):
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "colours")
    table.SetTypeToUser()
    table.SetNumberOfColors(8)
    for value, name in names.items():
        table.SetColor(value, name, 0.5, 0.5, 0.5, 1.0)
    return table


@pytest.mark.parametrize(("values", "dtype", "colours"), [
    ([3, 7], np.uint8, None),
    ([5], np.uint8, None),  # one value without a colour name: Slicer names it after the node
    ([-2, 5, 300], np.int16, None),
    ([5, 70000], np.int32, None),
    ([1, 2, 3], np.uint8, {1: "liver", 2: "  kidney  "}),
    ([1], np.uint8, {1: "liver"}),
    ([2.0, 1.0], np.float32, None),
])
def test_labelmap_segment_names_are_the_names_slicers_import_gives(a_scene, a_training_set, values, dtype, colours):
    labels = np.zeros((4, 5, 6), dtype)
    labels.flat[[7 * i + 1 for i in range(len(values))]] = values
    labelmap = add_volume(a_scene, labels, class_name="vtkMRMLLabelMapVolumeNode", name="my labels")
    if colours is not None:
        labelmap.CreateDefaultDisplayNodes()
        labelmap.GetDisplayNode().SetAndObserveColorNodeID(colour_table(a_scene, colours).GetID())
    before = node_summary(a_scene)
    assert a_training_set.segment_names(labelmap) == names_by_slicers_import(a_training_set, labelmap)
    assert node_summary(a_scene) == before


def test_segmentation_names_are_listed_as_before_without_importing_anything(a_scene, a_training_set, monkeypatch):
    volume, segmentation, _ = add_synthetic_case(a_scene, "p1", names={1: " liver ", 2: "kidney"})
    a_training_set.add_case([volume], segmentation)
    monkeypatch.setattr(TrainingSet, "as_segmentation", lambda *a: pytest.fail("listing imported a label node"))
    assert a_training_set.cases()[0].segment_names == ["liver", "kidney"]


def test_listing_reads_a_labelmaps_voxels_once_per_change(a_scene, a_training_set, monkeypatch):
    volume = add_volume(a_scene, np.zeros((4, 5, 6), np.int16))
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[0, 0, 0] = 3
    labelmap = add_volume(a_scene, labels, class_name="vtkMRMLLabelMapVolumeNode", name="labels")
    reads = []
    monkeypatch.setattr(cases_module, "present_values",
                        lambda node: reads.append(1) or np.unique(slicer.util.arrayFromVolume(node)))
    a_training_set.add_case([volume], labelmap)
    for _ in range(3):
        assert a_training_set.cases()[0].segment_names == ["labels"]
    assert len(reads) == 1
    slicer.util.arrayFromVolume(labelmap)[1, 1, 1] = 7
    slicer.util.arrayFromVolumeModified(labelmap)
    assert [a_training_set.cases()[0].segment_names for _ in range(2)] == [["Label_3", "Label_7"]] * 2
    assert len(reads) == 2


def test_a_reloaded_scene_lists_labelmap_names_from_the_record_without_reading_voxels(
        a_scene, a_training_set, monkeypatch):
    volume = add_volume(a_scene, np.zeros((4, 5, 6), np.int16))
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[0, 0, 0], labels[1, 1, 1] = 3, 7
    a_training_set.add_case([volume], add_volume(a_scene, labels, class_name="vtkMRMLLabelMapVolumeNode"))
    cases_module._LABELMAP_CACHE.clear()  # what a new Slicer session starts with
    monkeypatch.setattr(cases_module, "present_values", lambda node: pytest.fail("listing read voxels"))
    assert a_training_set.cases()[0].segment_names == ["Label_3", "Label_7"]
