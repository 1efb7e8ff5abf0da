"""``autosegnet verify``: check a raw dataset's integrity and report every problem in one run.

Covers nnU-Net's ``--verify_dataset_integrity`` (files present, label values declared, image/label geometry,
NaN, channel count) and adds: geometry mismatches with the numbers (configurable tolerance), Inf values, empty
labels, stray/unreadable/orphaned files, per-channel geometry, mixed 2D/3D, orientation that differs between
cases, numTraining. Nothing in the dataset is changed. Each case is read in one worker (``num_workers``).

Every finding is a :class:`Problem` with a stable ``code`` (see :data:`PROBLEM_CODES`); ``error`` problems
make the dataset unusable for training, ``warning`` ones deserve a look.

The checks that cost nothing next to preprocessing run in every fingerprint and preprocessing too, without
``--verify``: :func:`require_training_layout` (dataset.json, missing/extra/unmatched files, numTraining: a listing
of the folders) and :func:`read_checked_case` (image/label geometry, spacing, NaN/Inf: on the voxels those
stages read anyway).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.dataset.raw import Case, RawDataset
from AutoSegNetLib.errors import AutoSegNetError, DatasetFormatError
from AutoSegNetLib.imageio import Geometry, ImageIO, io_by_name, io_for
from AutoSegNetLib.imageio.base import NonIntegerLabelError
from AutoSegNetLib.imageio.sitk_io import nifti_non_finite
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.atomic import write_json
from AutoSegNetLib.utils.stop import StopRequest
from AutoSegNetLib.utils.workers import run_parallel

log = logging.getLogger(__name__)

ERROR = "error"
WARNING = "warning"
#: Default geometry tolerance: relative for spacing, absolute for direction cosines, mm for the origin.
DEFAULT_TOLERANCE = 1e-4
_SHOWN_ERRORS = 20

#: Every problem code with its severity and what it means (the report's vocabulary).
PROBLEM_CODES: dict[str, tuple[str, str]] = {
    "invalid_dataset_json": (ERROR, "dataset.json is missing, not JSON, or has a wrong/missing/unknown field"),
    "missing_folder": (ERROR, "imagesTr/ or labelsTr/ is missing"),
    "no_training_cases": (ERROR, "no training images named {case}_{CCCC}{file_ending} were found"),
    "num_training_mismatch": (ERROR, "numTraining differs from the number of training cases found"),
    "missing_label": (ERROR, "a training case has images but no label file"),
    "label_without_image": (ERROR, "a label file has no images"),
    "missing_channel": (ERROR, "a channel file of a case is missing"),
    "extra_channel": (ERROR, "a channel file beyond the channels in channel_names"),
    "wrong_channel_count": (ERROR, "the images of a case hold another number of channels than channel_names"),
    "unreadable_file": (ERROR, "a file cannot be read (truncated, corrupt, wrong format, not scalar)"),
    "shape_mismatch": (ERROR, "image channels or image and label differ in shape"),
    "spacing_mismatch": (ERROR, "image channels or image and label differ in spacing (beyond the tolerance)"),
    "origin_mismatch": (ERROR, "image channels or image and label differ in origin (beyond the tolerance)"),
    "direction_mismatch": (ERROR, "image channels or image and label differ in direction (beyond the tolerance)"),
    "invalid_spacing": (ERROR, "a spacing is zero, negative or not finite"),
    "non_finite_values": (ERROR, "an image holds NaN or Inf values"),
    "non_integer_label": (ERROR, "a label file holds values that are not whole numbers"),
    "undeclared_label": (ERROR, "a label file holds values that dataset.json's labels do not declare"),
    "mixed_dimensionality": (ERROR, "some cases are 2D and others 3D"),
    "empty_label": (WARNING, "a label file holds background (and ignore) only"),
    "constant_image": (WARNING, "an image channel holds one value everywhere"),
    "orientation_differs": (WARNING, "a case's orientation differs from that of most cases"),
    "stray_file": (WARNING, "a file that is not part of any case (wrong name or ending, hidden, folder)"),
}


@dataclass(frozen=True)
class Problem:
    """One finding: severity ``error``/``warning``, the case and file (relative to the dataset) it concerns."""

    severity: str
    case: str | None
    file: str | None
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = " ".join(x for x in (f"[{self.case}]" if self.case else "", self.file or "") if x)
        return f"{self.severity.upper()} {self.code}: {where + ': ' if where else ''}{self.message}"


def problem(code: str, message: str, case: str | None = None, file: str | None = None) -> Problem:
    """A :class:`Problem` with the severity registered for ``code``."""
    return Problem(PROBLEM_CODES[code][0], case, file, code, message)


@dataclass
class VerificationReport:
    """All problems found in one dataset (sorted: dataset-wide first, then by case, file and code).

    ``checked_cases`` < the number of cases when a stop request cut the run short (``complete`` is then False
    and the report is no verdict on the dataset).
    """

    dataset: str
    num_training_cases: int
    num_test_cases: int
    tolerance: float
    problems: list[Problem] = field(default_factory=list)
    checked_cases: int = 0

    @property
    def complete(self) -> bool:
        """False when a stop request ended the run before every case was checked."""
        return self.checked_cases >= self.num_training_cases + self.num_test_cases

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def codes(self) -> set[tuple[str | None, str]]:
        """``{(case, code)}``: a compact view for tests and scripts."""
        return {(p.case, p.code) for p in self.problems}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "autosegnet-verify-report", "version": 1, "dataset": self.dataset, "ok": self.ok,
            "num_training_cases": self.num_training_cases, "num_test_cases": self.num_test_cases,
            "tolerance": self.tolerance, "num_errors": len(self.errors), "num_warnings": len(self.warnings),
            "problems": [p.to_dict() for p in self.problems],
        }

    def save(self, path: str | Path) -> None:
        """Write the report as JSON (atomically)."""
        write_json(path, self.to_dict())


# ----- per-case checks (run in workers) -------------------------------------------------------------------
@dataclass(frozen=True)
class CaseJob:
    """Everything a worker needs to check one case (picklable)."""

    case: str
    folder: Path
    images: tuple[Path, ...]
    label: Path | None
    io_name: str
    num_channels: int
    label_values: tuple[int, ...]
    background_values: tuple[int, ...]
    tolerance: float
    multi_channel_files: bool = False

    def __str__(self) -> str:
        return self.case


@dataclass(frozen=True)
class CaseResult:
    """A case's problems and the facts needed for checks across cases (None where unreadable)."""

    problems: tuple[Problem, ...]
    orientation: str | None
    image_dim: int | None


def check_case(job: CaseJob) -> CaseResult:
    """Read one case and report everything wrong with it; never raises for bad data."""
    found: list[Problem] = []
    io = io_by_name(job.io_name)
    reference = _check_images(job, io, found)
    if job.label is not None:
        _check_label(job, io, reference, found)
    if reference is None:
        return CaseResult(tuple(found), None, None)
    return CaseResult(tuple(found), reference[1].orientation_code(), reference[1].image_dim)


def _check_images(job: CaseJob, io: ImageIO, found: list[Problem]) -> tuple[tuple[int, ...], Geometry] | None:
    """Check every channel file; returns the first readable channel's (shape, geometry)."""
    reference: tuple[tuple[int, ...], Geometry, str] | None = None
    channels = 0
    all_read = True
    for path in job.images:
        rel = _relative(path, job.folder)
        data = _read(lambda p=path: io.read_images([p]), job.case, rel, found)
        if data is None:
            all_read = False
            continue
        array, geometry = data
        channels += array.shape[0]
        _check_values(array, path, job.case, rel, found)
        _check_spacing(geometry, job.case, rel, found)
        if reference is None:
            reference = (array.shape[1:], geometry, rel)
        else:
            what = f"channel {rel} vs {reference[2]}"
            _compare(reference[0], reference[1], array.shape[1:], geometry, job.case, job.tolerance, rel, what,
                     found)
    # One channel per file is checked while listing; files that may hold several (RGB) are counted here.
    if job.multi_channel_files and all_read and job.images and channels != job.num_channels:
        files = ", ".join(_relative(p, job.folder) for p in job.images)
        message = f"{files} hold {channels} channel(s); dataset.json's channel_names declares {job.num_channels}"
        found.append(problem("wrong_channel_count", message, job.case, _relative(job.images[0], job.folder)))
    return None if reference is None else reference[:2]


def _check_values(array: np.ndarray, path: Path, case: str, rel: str, found: list[Problem]) -> None:
    """NaN/Inf and constant channels of a ``(C, Z, Y, X)`` array read from ``path``."""
    _check_finite(array, path, case, rel, found)
    for index, channel in enumerate(array):
        finite = channel[np.isfinite(channel)]
        if finite.size and finite.min() == finite.max():
            which = f"channel {index} " if array.shape[0] > 1 else ""
            found.append(problem("constant_image", f"{which}holds the value {float(finite.min()):g} everywhere", case,
                                 rel))


def _check_finite(array: np.ndarray, path: Path, case: str, rel: str, found: list[Problem],
                  stored: bool = True) -> None:
    """NaN/Inf voxels of ``array`` read from ``path``; with ``stored`` also those a float NIfTI file holds, which
    ITK's NIfTI reader turns into 0 (costs reading such a file once more)."""
    nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
    note = ""
    if stored and str(path).lower().endswith((".nii", ".nii.gz")):
        try:
            stored_nan, stored_inf = nifti_non_finite(path)
        except (OSError, EOFError, ValueError):
            stored_nan, stored_inf = nan, inf  # the file was read above; nothing more to learn here
        if (stored_nan, stored_inf) != (nan, inf):
            nan, inf, note = stored_nan, stored_inf, " stored in the file (SimpleITK reads them as 0)"
    if nan or inf:
        found.append(problem("non_finite_values", f"{nan} NaN and {inf} Inf voxels (of {array[0].size}){note}",
                             case, rel))


def _check_spacing(geometry: Geometry, case: str, rel: str, found: list[Problem]) -> None:
    spacing = np.asarray(geometry.spacing)
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        found.append(problem("invalid_spacing", f"spacing {list(geometry.spacing)} (z, y, x mm)", case, rel))


def _check_label(job: CaseJob, io: ImageIO, reference: tuple[tuple[int, ...], Geometry] | None,
                 found: list[Problem]) -> None:
    rel = _relative(job.label, job.folder)
    data = _read(lambda: io.read_seg(job.label), job.case, rel, found)
    if data is None:
        return
    seg, geometry = data
    values, counts = _value_counts(seg)
    undeclared = [(v, c) for v, c in zip(values, counts) if v not in job.label_values]
    if undeclared:
        detail = ", ".join(f"{v} ({c} voxels)" for v, c in undeclared[:10])
        found.append(problem("undeclared_label", f"values not declared in dataset.json's labels "
                             f"{list(job.label_values)}: {detail}", job.case, rel))
    elif set(values) <= set(job.background_values):
        found.append(problem("empty_label", f"holds only {values} (no foreground)", job.case, rel))
    if reference is not None:
        _compare(reference[0], reference[1], seg.shape, geometry, job.case, job.tolerance, rel, "image vs label",
                 found)


def _value_counts(seg: np.ndarray) -> tuple[list[int], list[int]]:
    """Sorted distinct values and their voxel counts (bincount for the usual small non-negative labels)."""
    if seg.size and seg.dtype.kind in "ui" and seg.min() >= 0 and seg.max() < 65536:
        counts = np.bincount(seg.ravel())
        values = np.flatnonzero(counts)
        return values.tolist(), counts[values].tolist()
    values, counts = np.unique(seg, return_counts=True)
    return [int(v) for v in values], counts.tolist()


def _compare(shape_a: tuple[int, ...], geo_a: Geometry, shape_b: tuple[int, ...], geo_b: Geometry, case: str,
             tolerance: float, rel: str, what: str, found: list[Problem]) -> None:
    """Report shape and geometry differences (with the numbers) between two files of a case."""
    if tuple(shape_a) != tuple(shape_b):
        found.append(problem("shape_mismatch", f"{what}: shape {tuple(shape_a)} vs {tuple(shape_b)} (z, y, x)",
                             case, rel))
    for aspect, text in geo_a.mismatches(geo_b, tolerance).items():
        found.append(problem(f"{aspect}_mismatch", f"{what}: {text}; tolerance {tolerance:g}", case, rel))


def _read(reader: Callable[[], Any], case: str, rel: str, found: list[Problem]) -> Any:
    """Call ``reader``; a failure becomes an ``unreadable_file`` (or ``non_integer_label``) problem."""
    try:
        return reader()
    except NonIntegerLabelError as exc:
        shown = ", ".join(f"{v:g}" for v in exc.values[:5]) + (", ..." if len(exc.values) > 5 else "")
        found.append(problem("non_integer_label", f"holds non-integer values ({shown})", case, rel))
    except AutoSegNetError as exc:
        found.append(problem("unreadable_file", _short_reason(str(exc)), case, rel))
    except Exception as exc:  # a corrupt file may fail anywhere inside a reader library; report, don't crash
        found.append(problem("unreadable_file", f"{type(exc).__name__}: {_short_reason(str(exc))}", case, rel))
    return None


def _short_reason(text: str) -> str:
    return text.strip().splitlines()[-1][:300] if text.strip() else "unknown reason"


def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return str(path)


# ----- file listing ---------------------------------------------------------------------------------------
@dataclass
class Listing:
    """Cases found on disk (or in dataset.json's ``dataset``) plus the problems seen while listing."""

    training: dict[str, tuple[tuple[Path, ...], Path | None]] = field(default_factory=dict)
    num_listed: int = 0
    test: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def list_dataset(folder: Path, dj: DatasetJson, multi_channel_files: bool) -> Listing:
    """Group files into cases and report missing, extra and stray files."""
    listing = Listing()
    if dj.dataset is not None:
        _list_explicit(folder, dj, multi_channel_files, listing)
    else:
        for sub in ("imagesTr", "labelsTr"):
            if not (folder / sub).is_dir():
                listing.problems.append(problem("missing_folder", f"{sub}/ does not exist", file=sub))
        images = _group_images(folder, "imagesTr", dj, multi_channel_files, listing.problems)
        labels = _label_files(folder, dj, listing.problems)
        for case, files in sorted(images.items()):
            label = labels.get(case)
            if label is None:
                listing.problems.append(problem("missing_label", f"no labelsTr/{case}{dj.file_ending}", case,
                                                _relative(files[0], folder)))
            listing.training[case] = (files, label)
        for case in sorted(set(labels) - set(images)):
            listing.problems.append(problem("label_without_image", f"no imagesTr/{case}_0000{dj.file_ending}",
                                            case, _relative(labels[case], folder)))
    listing.test = _group_images(folder, "imagesTs", dj, multi_channel_files, listing.problems)
    listing.num_listed = len(dj.dataset) if dj.dataset is not None else len(listing.training)
    return listing


def _list_explicit(folder: Path, dj: DatasetJson, multi_channel_files: bool, listing: Listing) -> None:
    for case, entry in sorted((dj.dataset or {}).items()):
        paths = tuple(Path(p) if Path(p).is_absolute() else (folder / p) for p in entry.images)
        if not multi_channel_files and len(paths) != dj.num_channels:
            code = "missing_channel" if len(paths) < dj.num_channels else "extra_channel"
            listing.problems.append(problem(code, f"dataset.json's 'dataset' lists {len(paths)} image file(s); "
                                            f"channel_names declares {dj.num_channels}", case))
        for index, path in enumerate(paths):
            if not path.is_file():
                listing.problems.append(problem("missing_channel", f"channel {index} listed in dataset.json's "
                                                "'dataset' does not exist", case, _relative(path, folder)))
        label = None
        if entry.label is None:
            listing.problems.append(problem("missing_label", "dataset.json's 'dataset' lists no label", case))
        else:
            label = Path(entry.label) if Path(entry.label).is_absolute() else folder / entry.label
            if not label.is_file():
                listing.problems.append(problem("missing_label", "label listed in dataset.json's 'dataset' does not "
                                                "exist", case, _relative(label, folder)))
                label = None
        present = tuple(p for p in paths if p.is_file())
        if present:
            listing.training[case] = (present, label)


def _group_images(folder: Path, sub: str, dj: DatasetJson, multi_channel_files: bool,
                  found: list[Problem]) -> dict[str, tuple[Path, ...]]:
    """``{case: channel files}`` in ``folder/sub``, reporting gaps, extra channels and stray files."""
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(dj.file_ending) + "$")
    grouped: dict[str, dict[int, Path]] = {}
    for path in _entries(folder / sub):
        match = pattern.match(path.name)
        if match is None or not path.is_file() or path.name.startswith("."):
            found.append(problem("stray_file", _stray_reason(path, dj, f"{{case}}_{{CCCC}}{dj.file_ending}"),
                                 file=_relative(path, folder)))
            continue
        grouped.setdefault(match.group(1), {})[int(match.group(2))] = path
    cases = {}
    for case, channels in sorted(grouped.items()):
        expected = range(max(channels) + 1) if multi_channel_files else range(dj.num_channels)
        for index in sorted(set(expected) - set(channels)):
            if index < dj.num_channels:
                found.append(problem("missing_channel", f"no {sub}/{case}_{index:04d}{dj.file_ending} "
                                     f"(channel {index}: {dj.channel_names[str(index)]})", case,
                                     _relative(channels[min(channels)], folder)))
        for index in sorted(i for i in channels if i >= dj.num_channels):
            found.append(problem("extra_channel", f"channel index {index} but channel_names declares "
                                 f"{dj.num_channels} channel(s)", case, _relative(channels[index], folder)))
        kept = tuple(channels[i] for i in sorted(channels) if i < dj.num_channels)
        if kept:
            cases[case] = kept
    return cases


def _label_files(folder: Path, dj: DatasetJson, found: list[Problem]) -> dict[str, Path]:
    labels = {}
    for path in _entries(folder / "labelsTr"):
        if not path.is_file() or path.name.startswith(".") or not path.name.endswith(dj.file_ending):
            found.append(problem("stray_file", _stray_reason(path, dj, f"{{case}}{dj.file_ending}"),
                                 file=_relative(path, folder)))
            continue
        labels[path.name[: -len(dj.file_ending)]] = path
    return labels


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _stray_reason(path: Path, dj: DatasetJson, expected: str) -> str:
    if path.is_dir():
        return f"a folder where only files named {expected} belong; it is ignored"
    if path.name.startswith("."):
        return "a hidden file; it is ignored"
    return f"not named {expected} (file_ending is {dj.file_ending!r}); it is ignored"


# ----- entry point ----------------------------------------------------------------------------------------
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
        dj = DatasetJson.load(folder / "dataset.json")
    except DatasetFormatError as exc:
        report.problems.append(problem("invalid_dataset_json", str(exc), file="dataset.json"))
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
                             f"{listing.num_listed} training cases were found", file="dataset.json"))
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
                                     _relative(job.images[0], job.folder)))
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
    folder = Path(folder)
    try:
        dj = DatasetJson.load(folder / "dataset.json")
    except DatasetFormatError as exc:
        return [problem("invalid_dataset_json", str(exc), file="dataset.json")]
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
    first = _relative(case.images[0], dataset.folder)
    _check_spacing(geometry, case.name, first, found)
    per_file = len(case.images) == image.shape[0]
    for index, path in enumerate(case.images if per_file else case.images[:1]):
        array = image[index:index + 1] if per_file else image
        _check_finite(array, path, case.name, _relative(path, dataset.folder), found, stored_values)
    if seg is not None:
        _compare(image.shape[1:], geometry, seg.shape, label_geometry, case.name, tolerance,
                 _relative(case.label, dataset.folder), "image vs label", found)
    errors = [p for p in found if p.severity == ERROR]
    if errors:
        raise DatasetFormatError(refusal(errors, dataset.folder))
    return image, seg, geometry


def refusal(errors: list[Problem], folder: Path) -> str:
    """The message refusing a dataset for ``errors``: one line per problem naming the case and file, and the fix."""
    lines = [f"  {_where(p)}{p.message}" for p in errors[:_SHOWN_ERRORS]]
    if len(errors) > _SHOWN_ERRORS:
        lines.append(f"  ... and {len(errors) - _SHOWN_ERRORS} more")
    return (f"The raw dataset {folder} has {len(errors)} error(s) that would make training wrong:\n"
            + "\n".join(lines) + f"\nFix the files; `autosegnet verify {folder.name}` lists every problem at once.")


def _where(found: Problem) -> str:
    parts = [f"case {found.case!r}" if found.case else "", found.file or ""]
    where = ", ".join(part for part in parts if part)
    return f"{where}: " if where else ""
