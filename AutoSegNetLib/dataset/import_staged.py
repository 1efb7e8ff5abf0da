"""Staged cases -> nnU-Net v2 raw dataset (``imagesTr/``, ``labelsTr/``, ``dataset.json``), incrementally.

The slow half of exporting a 3D Slicer training set, run as ``autosegnet import-staged`` in the background:
hashing the voxels, compressing the files. The staging folder's ``export.json`` says which cases the dataset must
hold (see :mod:`AutoSegNetLib.dataset.staged`). For each case:

- staged: its content hash (:func:`~AutoSegNetLib.dataset.staged.content_hash`) is compared with the one
  recorded in dataset.json (``autosegnet.case_hashes``) at the last export; only a changed case is written
  (each file atomically), then its staged files are deleted;
- not staged: the caller found it unchanged since the last import; its files and hash stay.

Cases that left the training set have their files removed (only files named as this exporter names them).
dataset.json is written last, so an interrupted import leaves the previous hashes and the next import redoes
whatever was not recorded.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.dataset.listing import channel_file_name, label_file_name
from AutoSegNetLib.dataset.staged import (
    ExportManifest,
    StagedCase,
    case_folder,
    content_hash,
    read_staged_case,
    remove_staged_case,
    remove_stale_staging,
    write_imported,
)
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, ImageIO, io_for
from AutoSegNetLib.layout import DATASET_JSON_FILE
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.atomic import read_json, write_json

log = logging.getLogger(__name__)

STAGE = "import-staged"
DESCRIPTION = "Training cases exported from a 3D Slicer scene by the AutoSegNet module."


@dataclass
class ImportReport:
    """What an import did; ``warnings`` include the ones the staging side recorded in export.json."""

    folder: str
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    case_hashes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> ImportReport:
        data = read_json(path)
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


def case_files(folder: Path, case: str, num_channels: int, file_ending: str) -> list[Path]:
    """``imagesTr/<case>_0000<ending>``, ... one per channel, then ``labelsTr/<case><ending>``."""
    images = [folder / "imagesTr" / channel_file_name(case, channel, file_ending) for channel in range(num_channels)]
    return [*images, folder / "labelsTr" / label_file_name(case, file_ending)]


def previous_hashes(folder: Path) -> dict[str, str]:
    """``autosegnet.case_hashes`` of the dataset.json in ``folder`` ({} when there is none or it is unreadable)."""
    try:
        data = read_json(Path(folder) / DATASET_JSON_FILE)
    except AutoSegNetError:
        return {}
    return recorded_hashes(data)


def recorded_hashes(dataset_json: object) -> dict[str, str]:
    """``autosegnet.case_hashes`` of a dataset.json's content ({} when it records none)."""
    if not isinstance(dataset_json, dict):
        return {}
    return dict((dataset_json.get("autosegnet") or {}).get("case_hashes") or {})


def import_staged(staging: Path, raw_root: Path, reporter: ProgressReporter | None = None) -> ImportReport:
    """Turn the staged export in ``staging`` into the raw dataset ``raw_root/<export.json dataset>``.

    Emits a ``stage`` event, one ``case`` event per case (``status`` written/unchanged, ``index``/``total``)
    and a ``done`` event. Raises :class:`AutoSegNetError` naming the case when a case has neither staged data nor
    exported files (export again), or when a staged case does not belong to this export.
    """
    reporter = reporter or ProgressReporter("none")
    staging = Path(staging)
    manifest = ExportManifest.load(staging)
    folder = Path(raw_root) / manifest.dataset
    previous = previous_hashes(folder)
    report = ImportReport(str(folder), warnings=list(manifest.warnings))
    consumed = []
    reporter.emit("stage", stage=STAGE, dataset=manifest.dataset, cases=len(manifest.cases))
    for index, (name, stamp) in enumerate(manifest.cases.items(), start=1):
        staged = _import_case(staging, folder, manifest, name, stamp, previous, report)
        consumed += [staged] if staged is not None else []
        reporter.emit("case", stage=STAGE, case=name, index=index, total=len(manifest.cases),
                      status="written" if report.written[-1:] == [name] else "unchanged")
    report.removed = _remove_cases(folder, manifest.file_ending, set(previous) - set(report.case_hashes))
    _dataset_json(manifest, folder, report.case_hashes).save(folder / DATASET_JSON_FILE)
    _clean_staging(staging, manifest, consumed)
    reporter.emit("done", stage=STAGE, dataset=manifest.dataset, written=len(report.written),
                  unchanged=len(report.unchanged), removed=len(report.removed))
    log.info("%s: %d written, %d unchanged, %d removed.", folder, len(report.written), len(report.unchanged),
             len(report.removed))
    return report


def _import_case(staging: Path, folder: Path, manifest: ExportManifest, name: str, stamp: str,
                 previous: dict[str, str], report: ImportReport) -> StagedCase | None:
    """Write case ``name`` into the dataset ``folder`` if its staged content differs from what is there, recording
    it in ``report``; returns its staged copy (to remove once the import is complete), None if none was staged."""
    num_channels = len(manifest.channel_names)
    files = case_files(folder, name, num_channels, manifest.file_ending)
    staged = read_staged_case(case_folder(staging, name))
    if staged is None:
        if name not in previous or not all(path.is_file() for path in files):
            raise AutoSegNetError(
                f"Case {name}: nothing is staged in {case_folder(staging, name)} and the dataset {folder} holds no "
                "exported files for it (were they deleted?). Export the training set again.")
        report.case_hashes[name] = previous[name]
        report.unchanged.append(name)
        return None
    _check_staged(staged, stamp, manifest, num_channels)
    images, label = staged.load_images(), staged.load_label()
    report.case_hashes[name] = content_hash(images, label, staged.geometry, manifest.labels)
    if previous.get(name) == report.case_hashes[name] and all(path.is_file() for path in files):
        report.unchanged.append(name)
    else:
        _write_case(name, images, label, staged.geometry, files, io_for(manifest.file_ending))
        report.written.append(name)
    return staged


def _write_case(name: str, images: list[np.ndarray], label: np.ndarray, geometry: Geometry, files: list[Path],
                io: ImageIO) -> None:
    """Channel images ``(Z, Y, X)`` to ``files[:-1]``, the label map to ``files[-1]``."""
    for channel, (image, path) in enumerate(zip(images, files[:-1])):
        log.debug("Writing %s channel %d to %s", name, channel, path)
        io.write_image(image, path, geometry)
    io.write_seg(label, files[-1], geometry)


def _clean_staging(staging: Path, manifest: ExportManifest, consumed: list[StagedCase]) -> None:
    """Record what the dataset now holds and delete the imported staged cases."""
    write_imported(staging, dict(manifest.cases))
    for staged in consumed:
        remove_staged_case(staged)
    # what is left is stale (interrupted writes, cases that left the training set), unless staged anew meanwhile
    remove_stale_staging(staging, keep={name for name in manifest.cases
                                        if read_staged_case(case_folder(staging, name)) is not None})


def _check_staged(staged: StagedCase, stamp: str, manifest: ExportManifest, num_channels: int) -> None:
    if staged.stamp != stamp or staged.labels != manifest.labels:
        raise AutoSegNetError(
            f"Case {staged.name} in {staged.folder} was staged by another export than {manifest.dataset}'s current "
            "one (it changed while this import ran?). Export the training set again.")
    if len(staged.image_files) != num_channels:
        raise AutoSegNetError(f"Case {staged.name} has {len(staged.image_files)} staged channel(s) but the dataset "
                              f"has {num_channels} ({', '.join(manifest.channel_names)}). Export it again.")


def _remove_cases(folder: Path, file_ending: str, stale: set[str]) -> list[str]:
    for case in sorted(stale):
        for path in [*(folder / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9]{file_ending}"),
                     folder / "labelsTr" / label_file_name(case, file_ending)]:
            path.unlink(missing_ok=True)
    return sorted(stale)


def _dataset_json(manifest: ExportManifest, folder: Path, hashes: dict[str, str]) -> DatasetJson:
    return DatasetJson(
        channel_names={str(i): name for i, name in enumerate(manifest.channel_names)},
        labels={"background": 0, **manifest.labels},
        num_training=len(hashes),
        file_ending=manifest.file_ending,
        metadata={
            "name": manifest.dataset_name,
            "description": DESCRIPTION,
            "autosegnet": {"source": "3D Slicer", "case_hashes": hashes},
        },
        source=str(folder / DATASET_JSON_FILE),
    )
