"""Scene -> nnU-Net v2 raw dataset (``imagesTr/``, ``labelsTr/``, ``dataset.json``) in the workspace.

Incremental: each case's content (voxels, geometry, label values) is hashed; a case whose hash equals the
one recorded in dataset.json (``autosegnet.case_hashes``) at the last export is not rewritten. Cases that
left the training set have their files removed (only files this exporter wrote).

Labels: every segment is exported on the grid of the case's first-channel volume. A segmentation or labelmap
on another grid is resampled onto it (nearest neighbour, by Slicer's segmentation logic) with a warning.
Where segments overlap, the one with the higher label value wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer
import vtk

from AutoSegNetLib.dataset import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, io_for
from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.cases import CASE_STATUS, EXPORT_HASH, TrainingCase, TrainingSet, string_array, temporary_nodes
from AutoSegNetSceneLib.labels import LabelTable, normalise_name
from AutoSegNetSceneLib.settings import DatasetSettings

log = logging.getLogger(__name__)


@dataclass
class CaseArrays:
    """One case ready to write: channel images ``(Z, Y, X)`` each, the label map ``(Z, Y, X)``, the geometry."""

    images: list[np.ndarray]
    label: np.ndarray
    geometry: Geometry
    warnings: list[str] = field(default_factory=list)

    def content_hash(self, table: LabelTable) -> str:
        digest = hashlib.sha1()
        meta = {"geometry": [self.geometry.spacing, self.geometry.origin, self.geometry.direction],
                "labels": table.as_dict()}
        digest.update(json.dumps(meta).encode())
        for array in [*self.images, self.label]:
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


@dataclass
class ExportReport:
    """What an export did."""

    folder: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"Exported to {self.folder}: {len(self.written)} written, {len(self.unchanged)} unchanged, "
                f"{len(self.removed)} removed.")
        return "\n".join([text, *(f"Warning: {w}" for w in self.warnings)])


def export_training_set(training_set: TrainingSet, settings: DatasetSettings) -> ExportReport:
    """Write the scene's training cases as the raw dataset named by ``settings``; returns a report."""
    cases = training_set.cases()
    if not cases:
        raise AutoSegNetError("There are no training cases yet: select a volume and its segmentation, then "
                              "click 'Add as training case'.")
    report = ExportReport(settings.raw_folder)
    table = _update_label_table(training_set, cases, report)
    previous = _previous_hashes(settings.raw_folder)
    io = io_for(settings.file_ending)
    hashes: dict[str, str] = {}
    for case in cases:
        arrays = case_arrays(training_set, case, table, len(settings.channel_names))
        report.warnings += arrays.warnings
        hashes[case.name] = arrays.content_hash(table)
        files = _case_files(settings, case.name)
        if previous.get(case.name) == hashes[case.name] and all(f.is_file() for f in files):
            report.unchanged.append(case.name)
        else:
            for channel, (image, path) in enumerate(zip(arrays.images, files[:-1])):
                log.debug("Writing %s channel %d to %s", case.name, channel, path)
                io.write_image(image, path, arrays.geometry)
            io.write_seg(arrays.label, files[-1], arrays.geometry)
            report.written.append(case.name)
        case.volume.SetAttribute(EXPORT_HASH, hashes[case.name])
        case.volume.SetAttribute(CASE_STATUS, "exported")
    report.removed = _remove_stale_cases(settings, set(previous) - set(hashes))
    _dataset_json(settings, table, hashes).save(settings.raw_folder / "dataset.json")
    log.info(report.summary())
    return report


def case_arrays(training_set: TrainingSet, case: TrainingCase, table: LabelTable, num_channels: int) -> CaseArrays:
    """Images, label map and geometry of one case, all on the first channel's grid."""
    if len(case.volumes) != num_channels:
        raise AutoSegNetError(
            f"Training case {case.name} ({case.volume.GetName()!r}) has {len(case.volumes)} channel volume(s) but "
            f"the dataset has {num_channels} channel(s); add the case again with one volume per channel."
        )
    geometry = volumes.volume_geometry(case.volume)
    shape = volumes.dimensions_zyx(case.volume)
    images = []
    for channel, volume in enumerate(case.volumes):
        volumes.require_untransformed(volume)
        other = volumes.volume_geometry(volume)
        if volumes.dimensions_zyx(volume) != shape or geometry.differences(other):
            raise AutoSegNetError(
                f"Training case {case.name}: channel {channel} volume {volume.GetName()!r} is not on the grid of "
                f"channel 0 ({'; '.join(geometry.differences(other)) or 'different size'}). Resample it onto "
                "the first channel (Resample Scalar/Vector/DWI Volume module) and add the case again."
            )
        images.append(np.array(volumes.volume_array(volume)))
    label, warnings = label_array(training_set, case, table)
    return CaseArrays(images, label, geometry, warnings)


def label_array(training_set: TrainingSet, case: TrainingCase, table: LabelTable) -> tuple[np.ndarray, list[str]]:
    """The case's label map ``(Z, Y, X)`` on the first-channel grid, with the table's values."""
    volume, label_node = case.volume, case.label_node
    volumes.require_untransformed(label_node)
    warnings = []
    if not _label_grid_matches(training_set, label_node, volume):
        warnings.append(f"{case.name}: {label_node.GetName()!r} is not on the voxel grid of "
                        f"{volume.GetName()!r}; it was resampled onto the volume's grid.")
    scene = training_set.scene
    with training_set.as_segmentation(label_node) as segmentation_node:
        segmentation = segmentation_node.GetSegmentation()
        by_value = {}
        for index in range(segmentation.GetNumberOfSegments()):
            name = normalise_name(segmentation.GetNthSegment(index).GetName())
            if name in table:
                by_value.setdefault(table.value(name), []).append(segmentation.GetNthSegmentID(index))
        ordered = [(value, segment_id) for value in sorted(by_value) for segment_id in by_value[value]]
        shape = volumes.dimensions_zyx(volume)
        if not ordered:
            return np.zeros(shape, np.uint8), warnings
        with temporary_nodes(scene):
            labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "AutoSegNet temporary")
            ok = training_set.logic.ExportSegmentsToLabelmapNode(
                segmentation_node, string_array([s for _, s in ordered]), labelmap, volume,
                slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
            if not ok:
                raise AutoSegNetError(f"{case.name}: Slicer could not export {label_node.GetName()!r} as a labelmap.")
            exported = np.array(volumes.volume_array(labelmap))
    if exported.shape != shape:
        raise AutoSegNetError(f"{case.name}: exported label shape {exported.shape} differs from volume {shape}.")
    lookup = np.zeros(len(ordered) + 1, np.uint16)  # exported value i + 1 -> table value of ordered[i]
    lookup[1:] = [value for value, _ in ordered]
    label = lookup[exported.astype(np.int64)]
    return label.astype(np.uint8 if len(table) < 256 else np.uint16), warnings


def _label_grid_matches(training_set: TrainingSet, label_node, volume) -> bool:
    reference = volumes.ijk_to_ras(volume)
    if label_node.IsA("vtkMRMLLabelMapVolumeNode"):
        return volumes.same_lattice(reference, volumes.ijk_to_ras(label_node))
    segmentation = label_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        image = label_node.GetBinaryLabelmapInternalRepresentation(segmentation.GetNthSegmentID(index))
        if image is None:
            continue  # not stored as a labelmap (e.g. closed surface): the export rasterises it on the volume grid
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        if not volumes.same_lattice(reference, volumes.array_from_vtk_matrix(matrix)):
            return False
    return True


def _update_label_table(training_set: TrainingSet, cases: list[TrainingCase], report: ExportReport) -> LabelTable:
    table = training_set.labels
    for case in cases:
        for old, new in training_set.renamed_segments(case.label_node):
            report.warnings.append(
                f"{case.name}: segment {old!r} was renamed to {new!r}, so it now counts as label {new!r}. To rename "
                "a label in every case (keeping its value) use 'Rename label'."
            )
        table.add_names(case.segment_names)
    training_set.save_labels(table)
    for name in table.names():
        if not any(name in case.segment_names for case in cases):
            report.warnings.append(f"Label {name!r} (value {table.value(name)}) has no segment in any case.")
    return table


def _case_files(settings: DatasetSettings, case: str) -> list[Path]:
    folder, ending = settings.raw_folder, settings.file_ending
    images = [folder / "imagesTr" / f"{case}_{c:04d}{ending}" for c in range(len(settings.channel_names))]
    return [*images, folder / "labelsTr" / f"{case}{ending}"]


def _previous_hashes(folder: Path) -> dict[str, str]:
    path = folder / "dataset.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return dict((data.get("autosegnet") or {}).get("case_hashes") or {})


def _remove_stale_cases(settings: DatasetSettings, stale: set[str]) -> list[str]:
    folder, ending = settings.raw_folder, settings.file_ending
    for case in sorted(stale):
        for path in [*(folder / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9]{ending}"),
                     folder / "labelsTr" / f"{case}{ending}"]:
            path.unlink(missing_ok=True)
    return sorted(stale)


def _dataset_json(settings: DatasetSettings, table: LabelTable, hashes: dict[str, str]) -> DatasetJson:
    return DatasetJson(
        channel_names={str(i): name for i, name in enumerate(settings.channel_names)},
        labels=table.dataset_labels(),
        num_training=len(hashes),
        file_ending=settings.file_ending,
        metadata={
            "name": settings.dataset_name,
            "description": "Training cases exported from a 3D Slicer scene by the AutoSegNet module.",
            "autosegnet": {"source": "3D Slicer", "case_hashes": hashes},
        },
        source=str(settings.raw_folder / "dataset.json"),
    )


def verify_summary(report_path: Path, status: str, message: str = "") -> str:
    """Text for the GUI from the engine's ``verify --report`` JSON: a verdict, then one line per problem."""
    try:
        report = json.loads(Path(report_path).read_text())
    except (OSError, json.JSONDecodeError):
        return f"The dataset check did not complete ({status}): {message}".strip()
    problems = report.get("problems", [])
    verdict = ("Dataset check passed" if report.get("ok") else "Dataset check FAILED") + (
        f": {report.get('num_errors', 0)} error(s), {report.get('num_warnings', 0)} warning(s).")
    lines = [verdict]
    for found in problems:
        case = f"[{found['case']}]" if found.get("case") else ""
        where = " ".join(x for x in (case, found.get("file") or "") if x)
        lines.append(f"{str(found.get('severity', '')).upper()} {found.get('code', '')}: "
                     f"{where + ': ' if where else ''}{found.get('message', '')}")
    return "\n".join(lines)
