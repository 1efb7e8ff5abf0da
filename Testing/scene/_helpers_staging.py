"""A scene with one training case of every kind the export handles differently (for the staging tests).

Only MRML calls and ``import_segmentation``: the same builder runs against older versions of the scene glue, so
their exports can be compared file for file.
"""

from __future__ import annotations

import numpy as np
import slicer
from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.cases import string_array, temporary_nodes
from AutoSegNetSceneLib.import_prediction import import_segmentation
from AutoSegNetSceneLib.synthetic import add_synthetic_case, synthetic_arrays

SHAPE = (12, 24, 20)
OBLIQUE = np.array([[0.78, -0.45, 0.0, 5.0], [0.45, 0.78, 0.0, -7.0], [0.0, 0.0, 2.0, 11.0], [0, 0, 0, 1]])


def add_volume(scene, array, ijk_to_ras, name, class_name="vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(class_name, name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.SetIJKToRASMatrix(volumes.vtk_matrix(ijk_to_ras))
    return node


def shifted(ijk_to_ras: np.ndarray, shift_ijk) -> np.ndarray:
    """The same lattice with voxel (0, 0, 0) moved to voxel ``shift_ijk`` (i, j, k) of ``ijk_to_ras``."""
    matrix = np.array(ijk_to_ras, float)
    matrix[:3, 3] = (ijk_to_ras @ [*shift_ijk, 1.0])[:3]
    return matrix


def set_segment_mask(scene, segmentation_node, segment_id: str, mask: np.ndarray, reference) -> None:
    """Replace a segment's voxels by ``mask`` (on ``reference``'s grid), as the Segment Editor would."""
    with temporary_nodes(scene):
        labelmap = add_volume(scene, mask.astype(np.uint8), volumes.ijk_to_ras(reference), "AutoSegNet temporary",
                              "vtkMRMLLabelMapVolumeNode")
        logic = slicer.vtkSlicerSegmentationsModuleLogic()
        logic.SetMRMLScene(scene)
        assert logic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node, string_array([segment_id]))


def add_every_kind_of_case(scene) -> list[tuple]:
    """``[(channel volumes, label node)]``: segmentations and labelmaps on the volume lattice, shifted and cropped
    on it, on a coarser grid, with overlapping segments, an empty segment, an oblique grid, a hand-edited segment."""
    cases = []
    volume, segmentation, _ = add_synthetic_case(scene, "permuted", seed=1)
    cases.append(([volume], segmentation))
    volume, segmentation, _ = add_synthetic_case(scene, "oblique", seed=2, ijk_to_ras=OBLIQUE)
    cases.append(([volume], segmentation))

    image, labels = synthetic_arrays(SHAPE, seed=3)
    volume = add_volume(scene, image, OBLIQUE, "labelmap same grid")
    labelmap = add_volume(scene, labels * 3, OBLIQUE, "lm", "vtkMRMLLabelMapVolumeNode")
    cases.append(([volume], labelmap))

    image, labels = synthetic_arrays(SHAPE, seed=4)
    volume = add_volume(scene, image, OBLIQUE, "labelmap cropped")
    labelmap = add_volume(scene, labels[2:9, 3:20, 1:15] * 3, shifted(OBLIQUE, (1, 3, 2)), "cropped lm",
                          "vtkMRMLLabelMapVolumeNode")
    cases.append(([volume], labelmap))

    image, labels = synthetic_arrays((6, 12, 10), seed=5)
    volume = add_volume(scene, np.kron(image, np.ones((2, 2, 2), np.int16)), np.diag([1.0, 1.0, 1.0, 1.0]), "coarse")
    coarse_grid = np.diag([2.0, 2.0, 2.0, 1.0])
    coarse_grid[:3, 3] = 0.5
    labelmap = add_volume(scene, labels * 3, coarse_grid, "coarse lm", "vtkMRMLLabelMapVolumeNode")
    cases.append(([volume], labelmap))

    image, labels = synthetic_arrays(SHAPE, seed=6)  # overlapping segments on separate layers, and an empty one
    volume = add_volume(scene, image, OBLIQUE, "overlap")
    segmentation = import_segmentation(scene, labels, {1: "ball", 2: "box", 7: "never drawn"}, volume, "overlap seg")
    wide = np.zeros(SHAPE, np.uint8)
    wide[3:9, 5:15, 4:12] = 1
    other = import_segmentation(scene, wide, {1: "box"}, volume, "other")
    segmentation.GetSegmentation().CopySegmentFromSegmentation(
        other.GetSegmentation(), other.GetSegmentation().GetNthSegmentID(0), False)
    cases.append(([volume], segmentation))

    image, labels = synthetic_arrays(SHAPE, seed=7)  # segment layer cropped and shifted on the volume's lattice
    volume = add_volume(scene, image, OBLIQUE, "cropped segmentation")
    small = add_volume(scene, image[2:10, 4:22, 3:18], shifted(OBLIQUE, (3, 4, 2)), "crop reference")
    segmentation = import_segmentation(scene, labels[2:10, 4:22, 3:18], {1: "ball", 2: "box"}, small, "crop seg")
    cases.append(([volume], segmentation))

    image, labels = synthetic_arrays(SHAPE, seed=8)  # a segment edited after import
    volume = add_volume(scene, image, OBLIQUE, "edited")
    segmentation = import_segmentation(scene, labels, {1: "ball", 2: "box"}, volume, "edited seg")
    mask = np.zeros(SHAPE, np.uint8)
    mask[0:5, 0:6, 0:7] = 1
    set_segment_mask(scene, segmentation, segmentation.GetSegmentation().GetNthSegmentID(1), mask, volume)
    cases.append(([volume], segmentation))

    image, labels = synthetic_arrays((6, 12, 10), seed=9)  # a segmentation on a coarser grid
    volume = add_volume(scene, np.kron(image, np.ones((2, 2, 2), np.int16)), np.eye(4), "coarse segmentation")
    reference = add_volume(scene, image, coarse_grid, "coarse reference")
    segmentation = import_segmentation(scene, labels, {1: "ball", 2: "box"}, reference, "coarse seg")
    cases.append(([volume], segmentation))
    return cases
