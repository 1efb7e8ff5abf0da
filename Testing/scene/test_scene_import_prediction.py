"""Prediction -> segmentation node: names, colours, label values and the input volume's geometry."""

from __future__ import annotations

import numpy as np
import pytest
import vtk
from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.cases import TrainingCase, TrainingSet
from AutoSegNetSceneLib.export import label_array
from AutoSegNetSceneLib.import_prediction import (
    import_scalar_volume,
    import_segmentation,
    read_on_volume_grid,
)
from AutoSegNetSceneLib.labels import LabelTable, label_color
from AutoSegNetSceneLib.segment import PredictionFolders, import_prediction_output, write_prediction_input
from AutoSegNetSceneLib.synthetic import synthetic_arrays

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.models.versions import model_label_names
from Testing.scene._helpers_slicer import PLACEMENTS, add_volume, segment_names


def exported_labels(scene, segmentation, volume) -> np.ndarray:
    """The segmentation exported back on the volume grid with segment i -> i + 1."""
    table = LabelTable({name: i + 1 for i, name in enumerate(segment_names(segmentation))})
    case = TrainingCase("c", [volume], segmentation, "new")
    return label_array(TrainingSet(scene), case, table)[0]


@pytest.mark.parametrize("placement", ["oblique", "permuted_flipped"])
def test_segments_get_the_model_names_colours_and_the_volume_geometry(a_scene, placement):
    image, labels = synthetic_arrays()
    volume = add_volume(a_scene, image, PLACEMENTS[placement])
    node = import_segmentation(a_scene, labels * 2, {2: "ball", 4: "box", 6: "never predicted"}, volume, "pred")
    assert segment_names(node) == ["ball", "box", "never predicted"]
    segmentation = node.GetSegmentation()
    colors = np.array([segmentation.GetNthSegment(i).GetColor() for i in range(3)])
    assert colors == pytest.approx(np.array([label_color(2), label_color(4), label_color(6)]))
    assert np.array_equal(exported_labels(a_scene, node, volume), labels)  # value 2 -> ball (1), 4 -> box (2)
    for index in range(2):
        grid = vtk.vtkMatrix4x4()
        node.GetBinaryLabelmapInternalRepresentation(segmentation.GetNthSegmentID(index)).GetImageToWorldMatrix(grid)
        assert volumes.same_lattice(volumes.ijk_to_ras(volume), volumes.array_from_vtk_matrix(grid))


def test_unnamed_prediction_values_become_label_segments(a_scene):
    volume = add_volume(a_scene, np.zeros((2, 3, 4), np.int16))
    labels = np.zeros((2, 3, 4), np.uint8)
    labels[0, 0, 0] = 9
    node = import_segmentation(a_scene, labels, {1: "a"}, volume)
    assert segment_names(node) == ["a", "Label_9"]


def test_a_prediction_of_another_shape_is_refused(a_scene):
    volume = add_volume(a_scene, np.zeros((2, 3, 4), np.int16))
    with pytest.raises(AutoSegNetError, match="differs from volume"):
        import_segmentation(a_scene, np.zeros((2, 3, 5), np.uint8), {1: "a"}, volume)


def test_importing_into_an_existing_node_replaces_its_segments(a_scene):
    volume = add_volume(a_scene, np.zeros((2, 3, 4), np.int16))
    node = import_segmentation(a_scene, np.ones((2, 3, 4), np.uint8), {1: "old"}, volume)
    again = import_segmentation(a_scene, np.ones((2, 3, 4), np.uint8), {1: "new"}, volume, segmentation_node=node)
    assert again is node and segment_names(node) == ["new"]


def test_region_models_name_the_values_of_regions_class_order():
    labels = {"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing": [3]}
    assert model_label_names(labels, [1, 2, 3]) == {1: "whole tumour", 2: "tumour core", 3: "enhancing"}
    assert model_label_names({"background": 0, "a": 1, "b": 2, "ignore": 3}) == {1: "a", 2: "b"}


def test_an_uncertainty_map_becomes_a_volume_on_the_input_grid(a_scene):
    volume = add_volume(a_scene, np.zeros((2, 3, 4), np.int16), PLACEMENTS["oblique"])
    values = np.random.default_rng(0).random((2, 3, 4)).astype(np.float32)
    node = import_scalar_volume(a_scene, values, volume, "uncertainty")
    assert np.array_equal(volumes.volume_array(node), values)
    assert volumes.ijk_to_ras(node) == pytest.approx(volumes.ijk_to_ras(volume))


def test_prediction_files_round_trip_through_the_engine_file_layout(a_scene, tmp_path):
    image, labels = synthetic_arrays()
    volume = add_volume(a_scene, image, PLACEMENTS["axial_LPS_like_DICOM"], "ct")
    folders = PredictionFolders(tmp_path)
    [written] = write_prediction_input([volume], folders)
    assert written.name == "slicer_input_0000.nii.gz"
    read, geometry = io_for(written).read_images([written])
    assert np.array_equal(read[0], image) and geometry.differences(volumes.volume_geometry(volume)) == []
    # what the engine writes: label map and uncertainty in the input's geometry
    io_for(".nii.gz").write_seg(labels, folders.segmentation, geometry)
    io_for(".nii.gz").write_image(np.full(labels.shape, 0.25, np.float32),
                                  folders.output / "slicer_input_uncertainty.nii.gz", geometry)
    result = import_prediction_output(a_scene, folders, volume, {1: "ball", 2: "box"})
    assert segment_names(result["segmentation"]) == ["ball", "box"]
    assert np.array_equal(exported_labels(a_scene, result["segmentation"], volume), labels)
    assert np.all(volumes.volume_array(result["uncertainty"]) == 0.25)


def test_a_prediction_file_in_another_geometry_is_refused(a_scene, tmp_path):
    volume = add_volume(a_scene, np.zeros((2, 3, 4), np.int16), PLACEMENTS["oblique"])
    path = tmp_path / "p.nii.gz"
    io_for(path).write_seg(np.zeros((2, 3, 4), np.uint8), path, volumes.geometry_from_ijk_to_ras(np.eye(4)))
    with pytest.raises(AutoSegNetError, match="not in the geometry of its input volume"):
        read_on_volume_grid(path, volume)
