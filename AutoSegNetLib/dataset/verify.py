"""``autosegnet verify``: check a raw dataset's integrity and report every problem in one run.

Covers nnU-Net's ``--verify_dataset_integrity`` (files present, label values declared, image/label geometry,
NaN, channel count) and adds: geometry mismatches with the numbers (configurable tolerance), Inf values, empty
labels, stray/unreadable/orphaned files, per-channel geometry, mixed 2D/3D, orientation that differs between
cases, numTraining. Nothing in the dataset is changed. Each case is read in one worker (``num_workers``).

The parts: the report's vocabulary (:mod:`.problems`), the checks of the files listed as cases
(:mod:`.verify_layout`, on the one case listing :mod:`.listing`), the checks of one case (:mod:`.verify_case`); here
the entry point :func:`verify_dataset` and the checks across cases.

The checks that cost nothing next to preprocessing run in every fingerprint and preprocessing too, without
``--verify``: :func:`require_training_layout` (dataset.json, missing/extra/unmatched files, numTraining: a listing
of the folders) and :func:`read_checked_case` (image/label geometry, spacing, NaN/Inf: on the voxels those
stages read anyway).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.dataset.problems import (
    DEFAULT_TOLERANCE,
    ERROR,
    WARNING,
    Problem,
    VerificationReport,
    problem,
    refusal,
    relative_name,
)
from AutoSegNetLib.dataset.raw import Case, RawDataset
from AutoSegNetLib.dataset.verify_case import (
    CaseJob,
    CaseResult,
    check_case,
    check_finite,
    check_spacing,
    compare_geometry,
)
from AutoSegNetLib.dataset.verify_layout import Listing, list_dataset
from AutoSegNetLib.errors import AutoSegNetError, DatasetFormatError
from AutoSegNetLib.imageio import Geometry, ImageIO, io_for
from AutoSegNetLib.layout import DATASET_JSON_FILE
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.stop import StopRequest
from AutoSegNetLib.utils.workers import run_parallel

log = logging.getLogger(__name__)

def verify_dataset(folder: str | Path, tolerance: float = DEFAULT_TOLERANCE, num_workers: int = 1,
                   reporter: ProgressReporter | None = None, stop: StopRequest | None = None) -> VerificationReport:
    """Check the raw dataset in ``folder`` and return every problem found (the dataset is only read).

    ``tolerance``: relative for spacing, absolute for direction cosines, mm for the origin (at least 1/1000
    voxel); see :meth:`Geometry.mismatches`. Emits ``case`` events (one per case, with its problems) and a
    ``done`` event through ``reporter``. Once ``stop`` is requested no further case is started; the report is
    then incomplete (``complete`` False) and the ``done`` event has ``status="stopped"``.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise AutoSegNetError(f"{folder} is not a folder.")
    report = VerificationReport(str(folder), 0, 0, tolerance)
    try:
        dj = DatasetJson.load(folder / DATASET_JSON_FILE)
    except DatasetFormatError as exc:
        report.problems.append(problem("invalid_dataset_json", str(exc), file=DATASET_JSON_FILE))
        return _finish(report, reporter)
    io = io_for(dj.file_ending, dj.overwrite_image_reader_writer)
    listing = list_dataset(folder, dj, type(io).multi_channel_files)
    report.num_training_cases, report.num_test_cases = len(listing.training), len(listing.test)
    report.problems.extend(listing.problems)
    report.problems.extend(_dataset_level(dj, listing))
    jobs = _jobs(folder, dj, io, listing, tolerance)
    results = []
    for index, (job, result) in enumerate(run_parallel(check_case, jobs, num_workers, stop=stop), start=1):
        results.append((job, result))
        report.checked_cases = index
        report.problems.extend(result.problems)
        if reporter is not None:
            reporter.emit("case", stage="verify", case=job.case, index=index, total=len(jobs),
                          errors=sum(p.severity == ERROR for p in result.problems),
                          warnings=sum(p.severity == WARNING for p in result.problems),
                          problems=[p.to_dict() for p in result.problems])
    if report.complete:  # comparisons across a part of the cases would mislead
        report.problems.extend(_across_cases(results))
    return _finish(report, reporter)


def _dataset_level(dj: DatasetJson, listing: Listing) -> list[Problem]:
    found = []
    if not listing.training:
        found.append(problem("no_training_cases", f"no training images named {{case}}_{{CCCC}}{dj.file_ending} "
                             "(or listed in dataset.json's 'dataset') were found"))
    if dj.num_training != listing.num_listed:
        found.append(problem("num_training_mismatch", f"dataset.json says numTraining {dj.num_training}, but "
                             f"{listing.num_listed} training cases were found", file=DATASET_JSON_FILE))
    return found


def _jobs(folder: Path, dj: DatasetJson, io: ImageIO, listing: Listing, tolerance: float) -> list[CaseJob]:
    background = tuple(v for v in (0, dj.ignore_label) if v is not None)
    common = {"folder": folder, "io_name": type(io).name, "num_channels": dj.num_channels,
              "label_values": tuple(dj.label_values), "background_values": background, "tolerance": tolerance,
              "multi_channel_files": type(io).multi_channel_files}
    jobs = [CaseJob(case=case, images=images, label=label, **common)
            for case, (images, label) in listing.training.items()]
    jobs += [CaseJob(case=case, images=images, label=None, **common) for case, images in listing.test.items()]
    return jobs


def _across_cases(results: Iterable[tuple[CaseJob, CaseResult]]) -> list[Problem]:
    """Orientation and dimensionality, compared between cases (majority = the reference)."""
    results = [(job, r) for job, r in results if r.orientation is not None]
    found = []
    dims = Counter(r.image_dim for _, r in results)
    if len(dims) > 1:
        summary = ", ".join(f"{n} cases {d}D" for d, n in sorted(dims.items()))
        usual = dims.most_common(1)[0][0]
        minority = sorted(job.case for job, r in results if r.image_dim != usual)
        found.append(problem("mixed_dimensionality", f"{summary}; these differ from the usual {usual}D: "
                             f"{', '.join(minority[:10])}{' ...' if len(minority) > 10 else ''}"))
    orientations = Counter(r.orientation for _, r in results)
    if len(orientations) > 1:
        usual, count = orientations.most_common(1)[0]
        for job, r in results:
            if r.orientation != usual:
                found.append(problem("orientation_differs", f"orientation {r.orientation} (ITK x, y, z axes, LPS) "
                                     f"while {count} of {len(results)} cases are {usual}", job.case,
                                     relative_name(job.images[0], job.folder)))
    return found


def _finish(report: VerificationReport, reporter: ProgressReporter | None) -> VerificationReport:
    report.problems.sort(key=lambda p: (p.case is not None, p.case or "", p.file or "", p.code, p.message))
    if reporter is not None and not report.complete:
        reporter.emit("done", stage="verify", status="stopped", checked=report.checked_cases,
                      total=report.num_training_cases + report.num_test_cases, errors=len(report.errors),
                      warnings=len(report.warnings))
    elif reporter is not None:
        reporter.emit("done", stage="verify", ok=report.ok, errors=len(report.errors),
                      warnings=len(report.warnings), cases=report.num_training_cases, test_cases=report.num_test_cases)
    return report


# ----- the cheap checks of every fingerprint and preprocessing ---------------------------------------------------
def layout_problems(folder: str | Path) -> list[Problem]:
    """What :func:`verify_dataset` finds without reading an image: dataset.json, case files that are missing,
    extra or without partner, stray files, numTraining. Costs a listing of the dataset's folders."""
    folder = Path(folder).resolve()  # as verify_dataset: files are named relative to the resolved folder
    try:
        dj = DatasetJson.load(folder / DATASET_JSON_FILE)
    except DatasetFormatError as exc:
        return [problem("invalid_dataset_json", str(exc), file=DATASET_JSON_FILE)]
    io = io_for(dj.file_ending, dj.overwrite_image_reader_writer)
    listing = list_dataset(folder, dj, type(io).multi_channel_files)
    return [*listing.problems, *_dataset_level(dj, listing)]


def require_training_layout(folder: str | Path, only_warn: tuple[str, ...] = ()) -> None:
    """Raise :class:`DatasetFormatError` listing the :func:`layout_problems` errors that concern training; those
    of imagesTs and those whose code is in ``only_warn`` are logged as warnings, like the warnings."""
    folder = Path(folder)
    found = layout_problems(folder)
    errors = [p for p in found if p.severity == ERROR and p.code not in only_warn
              and not (p.file or "").startswith("imagesTs/")]
    for other in found:
        if other not in errors:
            log.warning("%s", other)
    if errors:
        raise DatasetFormatError(refusal(errors, folder))


def read_checked_case(dataset: RawDataset, case: Case, tolerance: float = DEFAULT_TOLERANCE,
                      stored_values: bool = True) -> tuple[np.ndarray, np.ndarray | None, Geometry]:
    """:meth:`RawDataset.read_case` that refuses what :func:`verify_dataset` calls an error in what was read.

    Checks image/label shape and geometry (``tolerance`` as in verify), the spacing, and NaN/Inf voxels; with
    ``stored_values`` also those stored in float NIfTI files, which SimpleITK reads as 0 (costs reading such files
    once more). Raises :class:`DatasetFormatError` naming the case and the file.
    """
    image, seg, geometry, label_geometry = dataset.read_case_and_label_geometry(case)
    found: list[Problem] = []
    first = relative_name(case.images[0], dataset.folder)
    check_spacing(geometry, case.name, first, found)
    per_file = len(case.images) == image.shape[0]
    for index, path in enumerate(case.images if per_file else case.images[:1]):
        array = image[index:index + 1] if per_file else image
        check_finite(array, path, case.name, relative_name(path, dataset.folder), found, stored_values)
    if seg is not None:
        compare_geometry(image.shape[1:], geometry, seg.shape, label_geometry, case.name, tolerance,
                         relative_name(case.label, dataset.folder), "image vs label", found)
    errors = [p for p in found if p.severity == ERROR]
    if errors:
        raise DatasetFormatError(refusal(errors, dataset.folder))
    return image, seg, geometry
