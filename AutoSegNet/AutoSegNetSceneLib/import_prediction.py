"""Prediction -> ``vtkMRMLSegmentationNode`` (and optional uncertainty/probability volumes).

The segmentation gets one segment per model label, named after it and coloured with the label's stable
colour (:func:`~AutoSegNetSceneLib.labels.label_color`), in the geometry of the input volume: its reference
image geometry is the volume's and its labelmap lies on the volume's voxel grid.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import slicer

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, io_for
from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.cases import string_array, temporary_nodes
from AutoSegNetSceneLib.labels import label_color

log = logging.getLogger(__name__)


def import_segmentation(scene: slicer.vtkMRMLScene, label_map: np.ndarray, names: dict[int, str],
                        reference_volume, node_name: str | None = None,
                        segmentation_node=None) -> slicer.vtkMRMLSegmentationNode:
    """Put a ``(Z, Y, X)`` label map predicted on ``reference_volume``'s grid into a segmentation node.

    ``names`` maps label values to segment names; every named label becomes a segment (empty if absent).
    Values without a name are imported as ``Label_<value>`` with a warning. Returns the (new) node.
    """
    label_map = np.asarray(label_map)
    shape = volumes.dimensions_zyx(reference_volume)
    if label_map.shape != shape:
        raise AutoSegNetError(f"Prediction shape {label_map.shape} differs from volume "
                              f"{reference_volume.GetName()!r} {shape} (Z, Y, X).")
    names = dict(names)
    for value in np.unique(label_map):
        if value > 0 and int(value) not in names:
            log.warning("Prediction contains label value %d that the model does not name.", value)
            names[int(value)] = f"Label_{int(value)}"
    values = sorted(names)
    node = segmentation_node or scene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", node_name or f"{reference_volume.GetName()} AutoSegNet")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    segmentation = node.GetSegmentation()
    segmentation.RemoveAllSegments()
    segment_ids = []
    for value in values:
        segment_ids.append(segmentation.AddEmptySegment("", names[value]))
        segmentation.GetSegment(segment_ids[-1]).SetColor(*label_color(value))
    if values:
        lookup = np.zeros(int(max(values, default=0)) + 1, np.int16)  # value -> 1..N in segment order
        lookup[values] = np.arange(1, len(values) + 1)
        _import_consecutive(scene, node, lookup[label_map.astype(np.int64)], segment_ids, reference_volume)
    return node


def _import_consecutive(scene, node, consecutive: np.ndarray, segment_ids: list[str], reference_volume) -> None:
    """Import values 1..N of ``consecutive`` into the N existing segments (keeps their names and colours)."""
    with temporary_nodes(scene):
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "AutoSegNet temporary")
        slicer.util.updateVolumeFromArray(labelmap, consecutive)
        volumes.copy_placement(reference_volume, labelmap)
        logic = slicer.vtkSlicerSegmentationsModuleLogic()
        logic.SetMRMLScene(scene)
        if not logic.ImportLabelmapToSegmentationNode(labelmap, node, string_array(segment_ids)):
            raise AutoSegNetError(f"Slicer could not import the prediction into {node.GetName()!r}.")


def import_scalar_volume(scene: slicer.vtkMRMLScene, array: np.ndarray, reference_volume,
                         node_name: str) -> slicer.vtkMRMLScalarVolumeNode:
    """A new scalar volume with a ``(Z, Y, X)`` array (e.g. uncertainty) on ``reference_volume``'s grid."""
    array = np.asarray(array)
    if array.shape != volumes.dimensions_zyx(reference_volume):
        raise AutoSegNetError(f"{node_name}: shape {array.shape} differs from volume "
                              f"{reference_volume.GetName()!r} {volumes.dimensions_zyx(reference_volume)}.")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", node_name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    volumes.copy_placement(reference_volume, node)
    node.CreateDefaultDisplayNodes()
    return node


def read_on_volume_grid(path: Path, reference_volume, kind: str = "prediction", labels: bool = True) -> np.ndarray:
    """Read a ``(Z, Y, X)`` array (a label map, or float values with ``labels=False``) that the engine wrote
    for ``reference_volume``. The file's geometry must be the volume's (predictions keep the input's geometry).
    """
    io = io_for(path)
    if labels:
        array, geometry = io.read_seg(path)
    else:
        channels, geometry = io.read_images([path])
        array = channels[0]
    expected = volumes.volume_geometry(reference_volume)
    _check_geometry(path, kind, geometry, expected)
    return array


def _check_geometry(path: Path, kind: str, found: Geometry, expected: Geometry) -> None:
    problems = expected.differences(found)
    if problems:
        raise AutoSegNetError(f"The {kind} {path} is not in the geometry of its input volume: {'; '.join(problems)}.")
