"""Scene -> nnU-Net v2 raw dataset (``imagesTr/``, ``labelsTr/``, ``dataset.json``) in the workspace.

Two halves, so that Slicer's GUI thread is never busy for long:

1. :class:`~AutoSegNetSceneLib.staging.StagedExport` (GUI thread, one short step per call): pulls the arrays of
   the cases that changed out of MRML into a staging folder, uncompressed;
2. the engine's ``import-staged`` command (a background job, :func:`AutoSegNetSceneLib.commands.import_staged`):
   hashes, writes compressed files and dataset.json, and a JSON report; :func:`load_export_report` reads it and
   :func:`apply_export_report` marks the cases as exported.

:func:`export_training_set` runs both in this process (scripts, tests).

Incremental: each case's content (voxels, geometry, label values) is hashed; a case whose hash equals the
one recorded in dataset.json (``autosegnet.case_hashes``) at the last export is not rewritten. Cases that
left the training set have their files removed (only files this exporter wrote).

Labels: every segment is exported on the grid of the case's first-channel volume. A segmentation or labelmap
on another grid is resampled onto it (nearest neighbour, by Slicer's segmentation logic) with a warning.
Where segments overlap, the one with the higher label value wins.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from AutoSegNetLib.dataset.import_staged import ImportReport, import_staged
from AutoSegNetSceneLib.cases import CASE_STATUS, EXPORT_HASH, TrainingSet
from AutoSegNetSceneLib.label_layers import label_array  # noqa: F401  (the label map of one case, for callers)
from AutoSegNetSceneLib.settings import DatasetSettings
from AutoSegNetSceneLib.staging import StagedExport

log = logging.getLogger(__name__)


class ExportReport(ImportReport):
    """What an export did: the engine's import report (``folder``, ``written``, ``unchanged``, ``removed``,
    ``warnings``, ``case_hashes``), with a summary for the GUI."""

    def summary(self) -> str:
        text = (f"Exported to {self.folder}: {len(self.written)} written, {len(self.unchanged)} unchanged, "
                f"{len(self.removed)} removed.")
        return "\n".join([text, *(f"Warning: {w}" for w in self.warnings)])

    @classmethod
    def from_import(cls, report: ImportReport) -> ExportReport:
        return cls(**asdict(report))


def export_training_set(training_set: TrainingSet, settings: DatasetSettings) -> ExportReport:
    """Write the scene's training cases as the raw dataset named by ``settings``, in this process; returns a report.

    Blocks for as long as the whole export takes: the module runs the two halves separately (see the module doc).
    """
    staged = StagedExport(training_set, settings).run()
    report = ExportReport.from_import(import_staged(staged.staging_folder, settings.workspace.raw))
    apply_export_report(training_set, report)
    log.info(report.summary())
    return report


def load_export_report(path: Path) -> ExportReport:
    """The report ``import-staged --report`` wrote."""
    return ExportReport.from_import(ImportReport.load(Path(path)))


def apply_export_report(training_set: TrainingSet, report: ExportReport) -> None:
    """Mark the exported cases ``exported`` and record their content hash (cheap: node attributes only)."""
    for case in training_set.cases():
        digest = report.case_hashes.get(case.name)
        if digest is not None:
            case.volume.SetAttribute(EXPORT_HASH, digest)
            case.volume.SetAttribute(CASE_STATUS, "exported")


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
