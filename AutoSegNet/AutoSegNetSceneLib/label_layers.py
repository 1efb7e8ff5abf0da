"""A training case's label map on the grid of its first-channel volume, as staging *layers* (GUI-thread cheap).

The label map takes the label table's values; where segments overlap the one with the higher value wins. Instead
of building that array here (on Slicer's GUI thread), :func:`label_layers` hands over the node memory as it is,
plus what each value in it means (see :func:`AutoSegNetLib.dataset.staged_label.compose_label`), and the engine paints
the final map in the background:

- a labelmap on the volume's voxel lattice: the labelmap's own array, each value mapped to the label its segment
  name (as Slicer's import names it) has in the table;
- a segmentation whose segments are binary labelmaps on the volume's lattice: each segment layer as it is (shared
  layers once), each segment's value in its layer mapped to its label;
- anything else (another grid, closed-surface segments, a shifted volume extent): Slicer's own export
  (``ExportSegmentsToLabelmapNode`` on the volume's geometry; labelmaps are imported first), which resamples with
  nearest neighbour; a grid mismatch is reported as a warning by :func:`label_grid_warning`.

All routes give the same label map as Slicer's export does (the tests compare them voxel for voxel).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from AutoSegNetLib.dataset.staged_label import LabelLayer, compose_label, label_dtype_for
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.cases import TrainingCase, TrainingSet, string_array, temporary_nodes
from AutoSegNetSceneLib.labels import LabelTable, normalise_name

#: ``(layers, [(layer index, value in the layer, label value)], label dtype)``, see ``compose_label``.
Layers = tuple[list[LabelLayer], list[tuple[int, int, int]], str]


@contextlib.contextmanager
def label_layers(training_set: TrainingSet, case: TrainingCase, table: LabelTable) -> Iterator[Layers]:
    """The case's label map as layers on its first channel's grid; arrays are node memory, valid in the block."""
    volume, label_node = case.volume, case.label_node
    volumes.require_untransformed(label_node)
    if label_node.IsA("vtkMRMLLabelMapVolumeNode"):
        direct = _labelmap_layers(training_set, label_node, volume, table)
    else:
        direct = _segment_layers(label_node, volume, table)
    if direct is not None:
        yield direct
        return
    with _slicer_export(training_set, case, table) as exported:
        yield exported


def label_array(training_set: TrainingSet, case: TrainingCase, table: LabelTable) -> tuple[np.ndarray, list[str]]:
    """The case's label map ``(Z, Y, X)`` on the first-channel grid with the table's values, and grid warnings."""
    warning = label_grid_warning(training_set, case)
    with label_layers(training_set, case, table) as (layers, values, dtype):
        label = compose_label(volumes.dimensions_zyx(case.volume), dtype, layers, values)
    return label, [warning] if warning else []


def label_grid_warning(training_set: TrainingSet, case: TrainingCase) -> str | None:
    """The warning for a segmentation or labelmap that is not on the voxel grid of the case's volume, or None."""
    if label_grid_matches(case.label_node, case.volume):
        return None
    return (f"{case.name}: {case.label_node.GetName()!r} is not on the voxel grid of {case.volume.GetName()!r}; "
            "it was resampled onto the volume's grid.")


def label_grid_matches(label_node, volume) -> bool:
    """True when the labelmap, or every segment stored as a labelmap, lies on the volume's voxel lattice."""
    reference = volumes.ijk_to_ras(volume)
    if label_node.IsA("vtkMRMLLabelMapVolumeNode"):
        return volumes.same_lattice(reference, volumes.ijk_to_ras(label_node))
    segmentation = label_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        image = label_node.GetBinaryLabelmapInternalRepresentation(segmentation.GetNthSegmentID(index))
        if image is None:
            continue  # not stored as a labelmap (e.g. closed surface): the export rasterises it on the volume grid
        if not volumes.same_lattice(reference, _image_to_world(image)):
            return False
    return True


def ordered_segments(segmentation, table: LabelTable) -> list[tuple[int, str]]:
    """``(label value, segment ID)`` of every segment whose name is in the table, by value (then segment order)."""
    by_value: dict[int, list[str]] = {}
    for index in range(segmentation.GetNumberOfSegments()):
        name = normalise_name(segmentation.GetNthSegment(index).GetName())
        if name in table:
            by_value.setdefault(table.value(name), []).append(segmentation.GetNthSegmentID(index))
    return [(value, segment_id) for value in sorted(by_value) for segment_id in by_value[value]]


# ----- direct routes: node memory as it is ------------------------------------------------------------------
def _labelmap_layers(training_set: TrainingSet, labelmap, volume, table: LabelTable) -> Layers | None:
    array = slicer.util.arrayFromVolume(labelmap)
    offset = _lattice_offset(volume, volumes.ijk_to_ras(labelmap), _extent_start(labelmap.GetImageData()))
    if array.dtype.kind not in "iu" or offset is None:
        return None
    entries = sorted((table.value(normalise_name(name)), value)
                     for value, name in training_set.labelmap_labels(labelmap).items() if normalise_name(name) in table)
    if not entries:
        return [], [], "uint8"
    return [LabelLayer(array, offset)], [(0, value, label) for label, value in entries], label_dtype_for(len(table))


def _segment_layers(segmentation_node, volume, table: LabelTable) -> Layers | None:
    segmentation = segmentation_node.GetSegmentation()
    ordered = ordered_segments(segmentation, table)
    if not ordered:
        return [], [], "uint8"
    binary = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if source_representation_name(segmentation) != binary:
        return None
    layers: list[LabelLayer] = []
    index_of: dict[str, int] = {}
    values = []
    for label, segment_id in ordered:
        image = segmentation_node.GetBinaryLabelmapInternalRepresentation(segment_id)
        if image is None or image.GetNumberOfScalarComponents() != 1:
            return None
        extent = image.GetExtent()
        if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
            continue  # an empty segment paints nothing
        key = image.GetAddressAsString("vtkObject")
        if key not in index_of:
            offset = _lattice_offset(volume, _image_to_world(image), (extent[0], extent[2], extent[4]))
            scalars = image.GetPointData().GetScalars()
            if offset is None or scalars is None:
                return None
            dims = image.GetDimensions()
            array = vtk_to_numpy(scalars).reshape(dims[2], dims[1], dims[0])
            if array.dtype.kind not in "iu":
                return None
            index_of[key] = len(layers)
            layers.append(LabelLayer(array, offset))
        values.append((index_of[key], int(segmentation.GetSegment(segment_id).GetLabelValue()), label))
    return layers, values, label_dtype_for(len(table))


def _lattice_offset(volume, image_to_world: np.ndarray, start_ijk) -> tuple[int, int, int] | None:
    """Voxel offset ``(z, y, x)`` on the volume grid of an array whose first element is index ``start_ijk`` of a
    grid placed by ``image_to_world``; None when the grids are not one lattice or the volume's extent is shifted."""
    if _extent_start(volume.GetImageData()) != (0, 0, 0):
        return None
    reference = volumes.ijk_to_ras(volume)
    if not volumes.same_lattice(reference, image_to_world):
        return None
    shift = np.rint(np.linalg.solve(reference[:3, :3], image_to_world[:3, 3] - reference[:3, 3])).astype(int)
    i, j, k = (int(s) + int(start) for s, start in zip(shift, start_ijk))
    return k, j, i


def _extent_start(image) -> tuple[int, int, int] | None:
    if image is None:
        return None
    extent = image.GetExtent()
    return extent[0], extent[2], extent[4]


def _image_to_world(image) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return volumes.array_from_vtk_matrix(matrix)


def source_representation_name(segmentation) -> str:
    """The segmentation's source (formerly "master") representation name."""
    getter = getattr(segmentation, "GetSourceRepresentationName", None) or segmentation.GetMasterRepresentationName
    return getter()


# ----- Slicer's route: resample with Slicer's segmentation logic --------------------------------------------
@contextlib.contextmanager
def _slicer_export(training_set: TrainingSet, case: TrainingCase, table: LabelTable) -> Iterator[Layers]:
    volume, label_node = case.volume, case.label_node
    scene = training_set.scene
    with training_set.as_segmentation(label_node) as segmentation_node:
        ordered = ordered_segments(segmentation_node.GetSegmentation(), table)
        if not ordered:
            yield [], [], "uint8"
            return
        with temporary_nodes(scene):
            labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "AutoSegNet temporary")
            ok = training_set.logic.ExportSegmentsToLabelmapNode(
                segmentation_node, string_array([s for _, s in ordered]), labelmap, volume,
                slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
            if not ok:
                raise AutoSegNetError(f"{case.name}: Slicer could not export {label_node.GetName()!r} as a labelmap.")
            exported = volumes.volume_array(labelmap)
            shape = volumes.dimensions_zyx(volume)
            if exported.shape != shape:
                raise AutoSegNetError(f"{case.name}: exported label shape {exported.shape} differs from volume "
                                      f"{shape}.")
            # the export writes 1, 2, ... in the order of the segment list
            yield ([LabelLayer(exported)], [(0, index + 1, value) for index, (value, _) in enumerate(ordered)],
                   label_dtype_for(len(table)))
