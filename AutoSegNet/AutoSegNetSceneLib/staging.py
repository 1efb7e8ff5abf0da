"""Export, fast half: scene -> staging folder on Slicer's GUI thread, one short step per call.

Only what needs MRML happens here. For each case whose content changed since it was last staged or imported,
the channel arrays and the label map (as layers, see :mod:`.label_layers`) are written as raw ``.npy`` files
straight from the node memory, at most 8 MB per step (4-80 ms at disk speed, whatever the volume size), with a
small ``case.json`` (geometry in the engine's
convention, label table, stamp), atomically (see :mod:`AutoSegNetLib.dataset.staged`). Hashing the voxels and
writing compressed NIfTI files is the engine's ``import-staged`` command, run as a background job.

Which cases changed is decided without reading voxels: a case's *stamp* hashes the modification times (and
object addresses) of its image data, segments and segment layers, its geometry, node IDs, the label table and the
dataset settings, plus a token of this Slicer session (modification times mean nothing in another process, so a
reloaded scene is staged again; the engine's content hash then finds the unchanged cases and does not rewrite them).
A case is skipped when a valid staged copy has its stamp, or when the last import recorded its stamp
(``imported.json``) and the dataset still holds its files.

Use from the module (a QTimer calling :meth:`StagedExport.step` until it returns False keeps the GUI responsive)::

    export = StagedExport(training_set, settings)
    while export.step():
        pass  # export.message / export.fraction for a progress bar
    args = commands.import_staged(settings, export.result.staging_folder, report_path)  # background job
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from AutoSegNetLib.dataset.import_staged import case_files, previous_hashes
from AutoSegNetLib.dataset.staged import (
    ExportManifest,
    StagedCaseWriter,
    case_folder,
    discard_manifest,
    read_imported,
    read_staged_case,
    remove_stale_staging,
)
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.cases import TrainingCase, TrainingSet, labelmap_labels_current, mtime_stamp
from AutoSegNetSceneLib.label_layers import label_grid_warning, label_layers, source_representation_name
from AutoSegNetSceneLib.labels import LabelTable
from AutoSegNetSceneLib.settings import DatasetSettings

log = logging.getLogger(__name__)

#: Distinguishes this process's stamps from those recorded by another Slicer session.
SESSION = uuid.uuid4().hex
#: Array bytes written per step: 4-80 ms at 2 GB/s-100 MB/s (SSD to hard disk), whatever the volume size.
CHUNK_BYTES = 8 << 20
#: Times a case that is edited while being staged is staged again before the export gives up.
MAX_ATTEMPTS = 3


def staging_folder(settings: DatasetSettings) -> Path:
    """``<workspace>/jobs/staging/<DatasetXXX_Name>``: where the dataset's cases are staged."""
    return Path(settings.workspace_root).resolve() / "jobs" / "staging" / settings.folder_name


@dataclass
class StagingResult:
    """What the GUI-thread half did; the engine's report (``import-staged --report``) tells the rest."""

    staging_folder: Path
    cases: list[str]  # every case of the export, in order
    staged: list[str] = field(default_factory=list)  # staged now: changed since the last staging or import
    pending: list[str] = field(default_factory=list)  # staged before and unchanged since, not imported yet
    unchanged: list[str] = field(default_factory=list)  # the dataset holds them as they are
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"Staged {len(self.staged)} changed case(s) of {len(self.cases)} ({len(self.pending)} staged "
                f"before, {len(self.unchanged)} unchanged); the dataset is written in the background.")
        return "\n".join([text, *(f"Warning: {w}" for w in self.warnings)])


class StagedExport:
    """Stage a training set for ``import-staged``, one short piece of work per :meth:`step`.

    Steps: reading the label values of labelmaps not read in this session (one pass over their voxels each);
    planning (label table, checks, stamps; no voxels); per changed case, taking its arrays (views; Slicer's
    labelmap export when the label node needs resampling) and writing them, ``chunk_bytes`` per step, then checking
    that the case did not change meanwhile (else it is staged again); writing ``export.json``.
    Creating the object only lists the cases. Errors in the cases (wrong channel count, channels on different
    grids, transforms) are raised by the planning step, before anything is staged.
    """

    def __init__(self, training_set: TrainingSet, settings: DatasetSettings, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.training_set = training_set
        self.settings = settings
        self.chunk_bytes = chunk_bytes
        self.folder = staging_folder(settings)
        if not training_set.cases():
            raise AutoSegNetError("There are no training cases yet: select a volume and its segmentation, then "
                                  "click 'Add as training case'.")
        self.result: StagingResult | None = None
        self.message = "Preparing the export"
        self._done = 0.0  # cases staged (a fraction for the one being written), out of self._total
        self._total = 0
        self._writer: StagedCaseWriter | None = None
        self._work = self._steps()

    @property
    def fraction(self) -> float:
        """Share of the steps done (0..1), for a progress bar."""
        if self.result is not None:
            return 1.0
        writing = self._writer.fraction if self._writer is not None else 0.0
        return 0.05 + 0.9 * (self._done + writing) / self._total if self._total else 0.0

    def step(self) -> bool:
        """Do the next piece of work (tens of ms: one labelmap's values, the checks, taking one case's arrays, or
        writing ``chunk_bytes``); returns True while there is more (then call again), False when done."""
        if self.result is not None:
            return False
        if self._work is None:
            raise AutoSegNetError("This export stopped at an error; start a new export.")
        try:
            next(self._work)
        except StopIteration:
            pass
        except BaseException:
            self._work = None
            raise
        return self.result is None

    def run(self) -> StagingResult:
        """All steps at once (scripts and tests; the module steps from a timer)."""
        while self.step():
            pass
        return self.result

    # ----- the steps -----------------------------------------------------------------------------------------
    def _steps(self) -> Iterator[None]:
        discard_manifest(self.folder)  # from now on an import must wait for this staging to finish
        cases = self.training_set.cases()
        unread = [case for case in cases if case.label_node.IsA("vtkMRMLLabelMapVolumeNode")
                  and not labelmap_labels_current(case.label_node)]
        for case in unread:
            self.message = f"Reading the label values of {case.name}"
            names = self.training_set.segment_names(case.label_node)
            self.training_set.record_labelmap_names(case.volume, names)
            yield
        cases = self.training_set.cases()  # now with every labelmap's current names
        self.message = "Checking the cases"
        result = StagingResult(self.folder, [case.name for case in cases])
        table = update_label_table(self.training_set, cases, result.warnings)
        for case in cases:
            check_case(case, len(self.settings.channel_names))
            warning = label_grid_warning(self.training_set, case)
            if warning:
                result.warnings.append(warning)
        stamps, to_stage = self._plan(cases, table, result)
        self._total = len(to_stage)
        yield
        for index, case in enumerate(to_stage, start=1):
            self.message = f"Staging {case.name} ({index}/{len(to_stage)})"
            for attempt in range(1, MAX_ATTEMPTS + 1):
                writer = self._writer = self._case_writer(case, table)
                try:
                    yield
                    while writer.write_next():
                        yield
                except BaseException:  # an error, or the export abandoned (generator closed): no partial files
                    writer.abort()
                    raise
                if case_stamp(self.training_set, case, table, self.settings) == writer.stamp:
                    break
                writer.abort()  # the case was edited while it was being written: stage it again
                if attempt == MAX_ATTEMPTS:
                    raise AutoSegNetError(f"{case.name} changed every time it was being staged; stop editing it "
                                          "during the export and export again.")
            stamps[case.name] = writer.stamp
            result.staged.append(case.name)
            self._done, self._writer = self._done + 1, None
            yield
        self.message = "Staging finished"
        remove_stale_staging(self.folder, keep=set(stamps))
        ExportManifest(self.settings.folder_name, self.settings.dataset_name, list(self.settings.channel_names),
                       self.settings.file_ending, table.as_dict(), {name: stamps[name] for name in result.cases},
                       result.warnings).save(self.folder)
        self.result = result

    def _plan(self, cases: list[TrainingCase], table: LabelTable,
              result: StagingResult) -> tuple[dict[str, str], list[TrainingCase]]:
        raw = self.settings.raw_folder
        previous, imported = previous_hashes(raw), read_imported(self.folder)
        channels, ending = len(self.settings.channel_names), self.settings.file_ending
        stamps, to_stage = {}, []
        for case in cases:
            stamps[case.name] = case_stamp(self.training_set, case, table, self.settings)
            folder = case_folder(self.folder, case.name)
            staged = read_staged_case(folder)
            if staged is not None and staged.stamp == stamps[case.name]:
                result.pending.append(case.name)
            elif (imported.get(case.name) == stamps[case.name] and case.name in previous
                  and all(path.is_file() for path in case_files(raw, case.name, channels, ending))):
                result.unchanged.append(case.name)
                if folder.exists():  # an older staging of it must not be imported
                    shutil.rmtree(folder, ignore_errors=True)
            else:
                to_stage.append(case)
        return stamps, to_stage

    def _case_writer(self, case: TrainingCase, table: LabelTable) -> StagedCaseWriter:
        """A writer of the case's current arrays: views of node memory (they keep their VTK arrays alive even if a
        node gets new voxels meanwhile; the stamp check after writing catches that), no copies."""
        stamp = case_stamp(self.training_set, case, table, self.settings)
        images = [volumes.volume_array(volume) for volume in case.volumes]
        with label_layers(self.training_set, case, table) as (layers, values, dtype):
            pass  # a temporary labelmap of Slicer's export route goes; its array stays alive with the view
        return StagedCaseWriter(case_folder(self.folder, case.name), case.name, stamp, images,
                                volumes.volume_geometry(case.volume), layers, values, dtype, table.as_dict(),
                                self.chunk_bytes)


# ----- planning helpers --------------------------------------------------------------------------------------
def update_label_table(training_set: TrainingSet, cases: list[TrainingCase], warnings: list[str]) -> LabelTable:
    """Give new segment names their values (saved in the scene); warn about renamed segments and unused labels."""
    table = training_set.labels
    for case in cases:
        for old, new in training_set.renamed_segments(case.label_node):
            warnings.append(
                f"{case.name}: segment {old!r} was renamed to {new!r}, so it now counts as label {new!r}. To rename "
                "a label in every case (keeping its value) use 'Rename label'."
            )
        table.add_names(case.segment_names)
    training_set.save_labels(table)
    for name in table.names():
        if not any(name in case.segment_names for case in cases):
            warnings.append(f"Label {name!r} (value {table.value(name)}) has no segment in any case.")
    return table


def check_case(case: TrainingCase, num_channels: int) -> None:
    """Refuse, with advice, a case the dataset cannot take: channel count, channel grids, transforms, no voxels."""
    if len(case.volumes) != num_channels:
        raise AutoSegNetError(
            f"Training case {case.name} ({case.volume.GetName()!r}) has {len(case.volumes)} channel volume(s) but "
            f"the dataset has {num_channels} channel(s); add the case again with one volume per channel."
        )
    geometry = volumes.volume_geometry(case.volume)
    shape = volumes.dimensions_zyx(case.volume)
    for channel, volume in enumerate(case.volumes):
        volumes.require_untransformed(volume)
        volumes.volume_array(volume)  # raises for a volume without voxels or with several components
        other = volumes.volume_geometry(volume)
        if volumes.dimensions_zyx(volume) != shape or geometry.differences(other):
            raise AutoSegNetError(
                f"Training case {case.name}: channel {channel} volume {volume.GetName()!r} is not on the grid of "
                f"channel 0 ({'; '.join(geometry.differences(other)) or 'different size'}). Resample it onto "
                "the first channel (Resample Scalar/Vector/DWI Volume module) and add the case again."
            )
    volumes.require_untransformed(case.label_node)


def case_stamp(training_set: TrainingSet, case: TrainingCase, table: LabelTable, settings: DatasetSettings) -> str:
    """A digest that changes whenever anything the staged case is made of may have changed (no voxels read)."""
    record = {
        "session": SESSION, "dataset": settings.folder_name, "channels": len(settings.channel_names),
        "labels": table.as_dict(), "volumes": [_volume_stamp(volume) for volume in case.volumes],
        "label": _label_stamp(training_set, case.label_node),
    }
    return hashlib.sha1(json.dumps(record, default=str).encode()).hexdigest()


def _volume_stamp(volume) -> list:
    return [volume.GetID(), mtime_stamp(volume.GetImageData()), volumes.ijk_to_ras(volume).ravel().tolist(),
            volume.GetTransformNodeID()]


def _label_stamp(training_set: TrainingSet, node) -> list:
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        return [*_volume_stamp(node), sorted(training_set.labelmap_labels(node).items())]
    segmentation = node.GetSegmentation()
    source = source_representation_name(segmentation)
    segments = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        segments.append([segmentation.GetNthSegmentID(index), segment.GetName(), segment.GetLabelValue(),
                         int(segment.GetMTime()), mtime_stamp(segment.GetRepresentation(source))])
    return [node.GetID(), node.GetTransformNodeID(), source, mtime_stamp(segmentation), segments]
