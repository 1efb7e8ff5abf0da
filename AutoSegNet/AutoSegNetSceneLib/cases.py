"""Which volumes + segmentations/labelmaps are training cases, remembered in the scene.

A case is anchored on its first-channel volume node:
- attribute ``AutoSegNet.CaseName`` (``case_0001``, ...; stable, names the exported files),
  ``AutoSegNet.CaseStatus`` (``new``, ``corrected``, ``exported``) and ``AutoSegNet.ExportHash``;
- node reference ``AutoSegNetLabel`` to the segmentation or labelmap volume node;
- node references ``AutoSegNetChannel`` to the volumes of channels 1, 2, ... (in order).
The segmentation node keeps ``AutoSegNet.SegmentNames`` (segment ID -> name when added) so renamed segments
can be reported. The label table and the case counter live in a singleton ``vtkMRMLScriptedModuleNode``.
Attributes and references are saved with the scene, so a saved and reloaded scene keeps its training set.

Listing cases is cheap (the module refreshes its table often, on Slicer's GUI thread): segment names come straight
from ``vtkSegmentation``; a labelmap's names (what Slicer's labelmap import would call each value present) are
computed once per change of its voxels or colour table (:meth:`TrainingSet.labelmap_labels`, cached on their
modification times) and recorded on the case's volume (``AutoSegNet.LabelmapNames``) so that a reloaded scene
lists them without reading voxels.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.labels import LabelTable, normalise_name

log = logging.getLogger(__name__)

CASE_NAME = "AutoSegNet.CaseName"
CASE_STATUS = "AutoSegNet.CaseStatus"
EXPORT_HASH = "AutoSegNet.ExportHash"
SEGMENT_NAMES = "AutoSegNet.SegmentNames"
LABELMAP_NAMES = "AutoSegNet.LabelmapNames"
LABEL_ROLE = "AutoSegNetLabel"
CHANNEL_ROLE = "AutoSegNetChannel"
TRAINING_SET_TAG = "AutoSegNetTrainingSet"
LABELS_PARAMETER = "Labels"
COUNTER_PARAMETER = "NextCaseNumber"


@dataclass
class TrainingCase:
    """One training case as found in the scene."""

    name: str
    volumes: list  # vtkMRMLScalarVolumeNode per channel, channel 0 first
    label_node: object  # vtkMRMLSegmentationNode or vtkMRMLLabelMapVolumeNode
    status: str
    segment_names: list[str] = field(default_factory=list)

    @property
    def volume(self):
        """The first-channel volume (the node that carries the case attributes)."""
        return self.volumes[0]


class TrainingSet:
    """The training cases of a scene and their shared label table."""

    def __init__(self, scene: slicer.vtkMRMLScene) -> None:
        self.scene = scene
        self.logic = slicer.vtkSlicerSegmentationsModuleLogic()
        self.logic.SetMRMLScene(scene)

    # ----- the training-set node ---------------------------------------------------------------------------
    @property
    def node(self) -> slicer.vtkMRMLScriptedModuleNode:
        """The singleton node holding the label table (created on first use)."""
        node = self.scene.GetSingletonNode(TRAINING_SET_TAG, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = self.scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            node.SetSingletonTag(TRAINING_SET_TAG)
            node.SetName("AutoSegNet training set")
            node.SetAttribute("ModuleName", "AutoSegNet")
            node = self.scene.AddNode(node)
        return node

    @property
    def labels(self) -> LabelTable:
        return LabelTable.from_json(self.node.GetParameter(LABELS_PARAMETER))

    def save_labels(self, table: LabelTable) -> None:
        self.node.SetParameter(LABELS_PARAMETER, table.to_json())

    def rename_label(self, old: str, new: str) -> None:
        """Rename a label everywhere: in the table (same value) and in every case's segments."""
        table = self.labels
        table.rename(old, new)
        for case in self.cases():
            if case.label_node.IsA("vtkMRMLSegmentationNode"):
                segmentation = case.label_node.GetSegmentation()
                for index in range(segmentation.GetNumberOfSegments()):
                    segment = segmentation.GetNthSegment(index)
                    if normalise_name(segment.GetName()) == normalise_name(old):
                        segment.SetName(new)
                _remember_segment_names(case.label_node)
        self.save_labels(table)

    def remove_label(self, name: str) -> None:
        """Drop a label from the table; its segments are then ignored at export."""
        table = self.labels
        table.remove(name)
        self.save_labels(table)

    # ----- cases ---------------------------------------------------------------------------------------
    def add_case(self, channel_volumes: Sequence, label_node, corrected: bool = False) -> TrainingCase:
        """Mark ``channel_volumes`` (channel 0 first) + ``label_node`` as a training case.

        Adding a volume that is already a case replaces its segmentation (the case keeps its name).
        New segment names get new label values. Returns the case; warnings go to the log.
        """
        channel_volumes = list(channel_volumes)
        self._check_nodes(channel_volumes, label_node)
        volume = channel_volumes[0]
        names = self.segment_names(label_node)
        if not names:
            raise AutoSegNetError(f"{label_node.GetName()!r} has no segments; draw at least one before adding it.")
        table = self.labels
        added = table.add_names(names)
        if added:
            log.info("New labels: %s", ", ".join(f"{n} = {table.value(n)}" for n in added))
        self.save_labels(table)
        if not volume.GetAttribute(CASE_NAME):
            volume.SetAttribute(CASE_NAME, self._next_case_name())
        volume.SetAttribute(CASE_STATUS, "corrected" if corrected else "new")
        volume.RemoveAttribute(EXPORT_HASH)
        volume.SetNodeReferenceID(LABEL_ROLE, label_node.GetID())
        volume.RemoveNodeReferenceIDs(CHANNEL_ROLE)
        for extra in channel_volumes[1:]:
            volume.AddNodeReferenceID(CHANNEL_ROLE, extra.GetID())
        if label_node.IsA("vtkMRMLSegmentationNode"):
            _remember_segment_names(label_node)
        else:
            self.record_labelmap_names(volume, names)
        return self._case_of(volume)

    def remove_case(self, volume) -> None:
        """Stop using ``volume`` as a training case (the nodes stay in the scene)."""
        for key in (CASE_NAME, CASE_STATUS, EXPORT_HASH, LABELMAP_NAMES):
            volume.RemoveAttribute(key)
        volume.RemoveNodeReferenceIDs(LABEL_ROLE)
        volume.RemoveNodeReferenceIDs(CHANNEL_ROLE)

    def cases(self) -> list[TrainingCase]:
        """All training cases in the scene, by case name. Cases whose label node was deleted are skipped."""
        found = []
        nodes = self.scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
        for index in range(nodes.GetNumberOfItems()):
            volume = nodes.GetItemAsObject(index)
            if volume.GetAttribute(CASE_NAME) and not volume.IsA("vtkMRMLLabelMapVolumeNode"):
                if volume.GetNodeReference(LABEL_ROLE) is None:
                    log.warning("Training case %s lost its segmentation; skipped.", volume.GetAttribute(CASE_NAME))
                    continue
                found.append(self._case_of(volume))
        return sorted(found, key=lambda case: case.name)

    def case_of(self, volume) -> TrainingCase | None:
        """The case anchored on ``volume``, or None."""
        return self._case_of(volume) if volume is not None and volume.GetAttribute(CASE_NAME) else None

    def _case_of(self, volume) -> TrainingCase:
        channels = [volume] + [
            volume.GetNthNodeReference(CHANNEL_ROLE, i) for i in range(volume.GetNumberOfNodeReferences(CHANNEL_ROLE))
        ]
        label_node = volume.GetNodeReference(LABEL_ROLE)
        return TrainingCase(
            name=volume.GetAttribute(CASE_NAME),
            volumes=channels,
            label_node=label_node,
            status=volume.GetAttribute(CASE_STATUS) or "new",
            segment_names=self._listed_names(volume, label_node),
        )

    def _listed_names(self, volume, label_node) -> list[str]:
        """Segment names for the case list: a labelmap's recorded names unless it changed in this session."""
        if label_node is not None and not label_node.IsA("vtkMRMLSegmentationNode"):
            recorded = volume.GetAttribute(LABELMAP_NAMES)
            if recorded and not _labelmap_cache_knows(label_node):
                with contextlib.suppress(ValueError, TypeError):
                    return [str(name) for name in json.loads(recorded)]
        return self.segment_names(label_node)

    def record_labelmap_names(self, volume, names: list[str]) -> None:
        """Remember a labelmap case's segment names on its volume (listed after a scene reload)."""
        text = json.dumps(list(names))
        if volume.GetAttribute(LABELMAP_NAMES) != text:
            volume.SetAttribute(LABELMAP_NAMES, text)

    def _next_case_name(self) -> str:
        taken = {case.name for case in self.cases()}
        number = int(self.node.GetParameter(COUNTER_PARAMETER) or 1)
        while f"case_{number:04d}" in taken:
            number += 1
        self.node.SetParameter(COUNTER_PARAMETER, str(number + 1))
        return f"case_{number:04d}"

    def _check_nodes(self, channel_volumes: list, label_node) -> None:
        if not channel_volumes or any(v is None for v in channel_volumes):
            raise AutoSegNetError("Select the volume (one per channel) of the training case.")
        if label_node is None:
            raise AutoSegNetError("Select the segmentation or labelmap of the training case.")
        if not (label_node.IsA("vtkMRMLSegmentationNode") or label_node.IsA("vtkMRMLLabelMapVolumeNode")):
            raise AutoSegNetError(f"{label_node.GetName()!r} is neither a segmentation nor a labelmap volume.")
        for node in [*channel_volumes, label_node]:
            volumes.require_untransformed(node)
        for volume in channel_volumes:
            volumes.volume_array(volume)  # raises for empty or multi-component volumes

    # ----- segment names and label arrays --------------------------------------------------------------
    def segment_names(self, label_node) -> list[str]:
        """Label names a segmentation or labelmap contributes (labelmaps: the names Slicer gives on import)."""
        if label_node is None:
            return []
        if label_node.IsA("vtkMRMLSegmentationNode"):
            segmentation = label_node.GetSegmentation()
            return [normalise_name(segmentation.GetNthSegment(i).GetName())
                    for i in range(segmentation.GetNumberOfSegments())]
        return [normalise_name(name) for name in self.labelmap_labels(label_node).values()]

    def labelmap_labels(self, labelmap) -> dict[int, str]:
        """``{value: segment name}`` (names as Slicer gives them) for every non-zero value a labelmap holds, in
        value order: exactly what importing it into a segmentation would make.

        Costs one pass over the voxels (a histogram) plus Slicer's import of a tiny image holding only the values
        found, and only when the voxels, the colour table or the node name changed since the last call.
        """
        key = _labelmap_key(labelmap)
        cached = _LABELMAP_CACHE.get(labelmap.GetID())
        if cached is not None and cached[0] == key:
            return dict(cached[1])
        labels = self._read_labelmap_labels(labelmap)
        if len(_LABELMAP_CACHE) > 1000:  # nodes of closed scenes: forget them all rather than track scenes
            _LABELMAP_CACHE.clear()
        _LABELMAP_CACHE[labelmap.GetID()] = (key, dict(labels))
        return labels

    def _read_labelmap_labels(self, labelmap) -> dict[int, str]:
        if labelmap.GetImageData() is None or labelmap.GetImageData().GetPointData().GetScalars() is None:
            raise AutoSegNetError(f"Labelmap {labelmap.GetName()!r} has no voxels (is it still loading?).")
        array = slicer.util.arrayFromVolume(labelmap)
        if array.dtype.kind not in "iu":  # e.g. float labels: Slicer's import decides how values are binned
            with self.as_segmentation(labelmap) as segmentation_node:
                segmentation = segmentation_node.GetSegmentation()
                return {int(segmentation.GetNthSegment(i).GetLabelValue()): segmentation.GetNthSegment(i).GetName()
                        for i in range(segmentation.GetNumberOfSegments())}
        values = [int(v) for v in present_values(labelmap) if v != 0]
        if not values:
            return {}
        # Slicer names segments from the colour table, "Label_<value>", or the node name (a single unnamed value):
        # import an image of just the values found, with the same name and colour table, and read the names back.
        with temporary_nodes(self.scene):
            tiny = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "AutoSegNet temporary")
            tiny.SetName(labelmap.GetName())
            slicer.util.updateVolumeFromArray(tiny, np.array(values, array.dtype).reshape(1, 1, -1))
            if labelmap.GetDisplayNode() is not None:
                tiny.CreateDefaultDisplayNodes()
                tiny.GetDisplayNode().SetAndObserveColorNodeID(labelmap.GetDisplayNode().GetColorNodeID() or "")
            segmentation_node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "AutoSegNet temporary")
            if not self.logic.ImportLabelmapToSegmentationNode(tiny, segmentation_node):
                raise AutoSegNetError(f"Could not read the labels of labelmap {labelmap.GetName()!r}.")
            segmentation = segmentation_node.GetSegmentation()
            if segmentation.GetNumberOfSegments() != len(values):
                raise AutoSegNetError(f"Labelmap {labelmap.GetName()!r}: Slicer made "
                                      f"{segmentation.GetNumberOfSegments()} segments of {len(values)} label values.")
            # the import creates one segment per value, in increasing value order
            return {value: segmentation.GetNthSegment(i).GetName() for i, value in enumerate(values)}

    @contextlib.contextmanager
    def as_segmentation(self, label_node) -> Iterator[slicer.vtkMRMLSegmentationNode]:
        """The segmentation node itself, or a temporary one imported from a labelmap (removed afterwards).

        A labelmap's segments are named from its colour table (``Label_N`` without one), as Slicer's import does.
        """
        if label_node.IsA("vtkMRMLSegmentationNode"):
            yield label_node
            return
        with temporary_nodes(self.scene):
            temporary = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "AutoSegNet temporary")
            if not self.logic.ImportLabelmapToSegmentationNode(label_node, temporary):
                raise AutoSegNetError(f"Could not read the labels of labelmap {label_node.GetName()!r}.")
            yield temporary

    def renamed_segments(self, label_node) -> list[tuple[str, str]]:
        """``(old, new)`` names of segments renamed since the case was added (matched by segment ID)."""
        if not label_node.IsA("vtkMRMLSegmentationNode"):
            return []
        remembered = json.loads(label_node.GetAttribute(SEGMENT_NAMES) or "{}")
        segmentation = label_node.GetSegmentation()
        renamed = []
        for segment_id, old in remembered.items():
            segment = segmentation.GetSegment(segment_id)
            if segment is not None and normalise_name(segment.GetName()) != old:
                renamed.append((old, normalise_name(segment.GetName())))
        return renamed


# labelmap node ID -> (what the labels depend on, {value: name}); keys hold VTK modification times, which are
# unique within a process, so a node ID reused by another scene cannot hit a stale entry.
_LABELMAP_CACHE: dict[str, tuple[tuple, dict[int, str]]] = {}


def _labelmap_key(labelmap) -> tuple:
    image = labelmap.GetImageData()
    display = labelmap.GetDisplayNode()
    color = display.GetColorNode() if display is not None else None
    return (mtime_stamp(image), labelmap.GetName(), display is not None,
            color.GetID() if color is not None else None, mtime_stamp(color))


def labelmap_labels_current(labelmap) -> bool:
    """True when :meth:`TrainingSet.labelmap_labels` would answer from its cache (no voxels to read)."""
    cached = _LABELMAP_CACHE.get(labelmap.GetID())
    return cached is not None and cached[0] == _labelmap_key(labelmap)


def _labelmap_cache_knows(labelmap) -> bool:
    """True when this session has seen the labelmap (its cached names are current, or it changed since)."""
    return labelmap.GetID() in _LABELMAP_CACHE


def mtime_stamp(obj) -> list | None:
    """``[address, modification time]`` of a VTK object: equal only while the object is unchanged.

    VTK's modification times come from one counter per process that only grows, and a new object starts with a
    fresh one, so an equal pair means the same, unmodified object (in this process; never compare across sessions).
    """
    if obj is None:
        return None
    return [obj.GetAddressAsString("vtkObject"), int(obj.GetMTime())]


def present_values(volume) -> np.ndarray:
    """The distinct voxel values of an integer volume node, sorted.

    8/16-bit types: VTK's multi-threaded histogram over every possible value (~50 ms for 512x512x300 voxels on 2
    cores, 3x faster than ``np.bincount``, which first widens every voxel to 64 bits); others: ``np.unique``.
    """
    array = slicer.util.arrayFromVolume(volume)
    if array.size == 0:
        return np.zeros(0, array.dtype)
    if array.dtype.itemsize <= 2 and hasattr(vtk, "vtkImageHistogram"):
        info = np.iinfo(array.dtype)
        histogram = vtk.vtkImageHistogram()
        histogram.SetInputData(volume.GetImageData())
        histogram.SetBinOrigin(float(info.min))
        histogram.SetBinSpacing(1.0)
        histogram.SetNumberOfBins(int(info.max) - int(info.min) + 1)
        histogram.Update()
        counts = vtk_to_numpy(histogram.GetHistogram())
        return (np.flatnonzero(counts) + int(info.min)).astype(array.dtype)
    if array.dtype.itemsize <= 2:
        unsigned = array.reshape(-1).view(np.dtype(f"u{array.dtype.itemsize}"))
        return np.sort(np.flatnonzero(np.bincount(unsigned)).astype(unsigned.dtype).view(array.dtype))
    return np.unique(array)


def _remember_segment_names(segmentation_node) -> None:
    segmentation = segmentation_node.GetSegmentation()
    names = {segmentation.GetNthSegmentID(i): normalise_name(segmentation.GetNthSegment(i).GetName())
             for i in range(segmentation.GetNumberOfSegments())}
    segmentation_node.SetAttribute(SEGMENT_NAMES, json.dumps(names))


@contextlib.contextmanager
def temporary_nodes(scene: slicer.vtkMRMLScene) -> Iterator[None]:
    """Remove every node added to ``scene`` inside the block (temporary labelmaps, their display and colour nodes)."""
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    try:
        yield
    finally:
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in added:
            if node is not None and node.GetID() not in before and scene.IsNodePresent(node):
                scene.RemoveNode(node)


def string_array(values: Sequence[str]) -> vtk.vtkStringArray:
    """A ``vtkStringArray`` (what the segmentation logic takes for segment ID lists)."""
    array = vtk.vtkStringArray()
    for value in values:
        array.InsertNextValue(value)
    return array
