"""Training cases are tagged in the scene, keep stable label values, and survive saving the scene."""

from __future__ import annotations

import json

import numpy as np
import pytest
import slicer
from AutoSegNetSceneLib.cases import CASE_NAME, LABEL_ROLE, TrainingSet
from AutoSegNetSceneLib.synthetic import add_synthetic_case

from AutoSegNetLib.errors import AutoSegNetError
from Testing.scene._helpers_slicer import add_segmentation, add_volume


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
