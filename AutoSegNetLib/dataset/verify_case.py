"""The checks of one case, run in a worker by ``verify``: files readable, channel count, NaN/Inf and constant
images, spacing, label values, and shape/geometry of channels and label against each other.

:func:`check_finite`, :func:`check_spacing` and :func:`compare_geometry` also serve the cheap checks every
fingerprint and preprocessing runs on what it reads (:func:`AutoSegNetLib.dataset.verify.read_checked_case`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from AutoSegNetLib.dataset.problems import Problem, problem, relative_name
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, ImageIO, io_by_name
from AutoSegNetLib.imageio.base import NonIntegerLabelError
from AutoSegNetLib.imageio.sitk_io import nifti_non_finite


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
        rel = relative_name(path, job.folder)
        data = _read(lambda p=path: io.read_images([p]), job.case, rel, found)
        if data is None:
            all_read = False
            continue
        array, geometry = data
        channels += array.shape[0]
        _check_values(array, path, job.case, rel, found)
        check_spacing(geometry, job.case, rel, found)
        if reference is None:
            reference = (array.shape[1:], geometry, rel)
        else:
            what = f"channel {rel} vs {reference[2]}"
            compare_geometry(reference[0], reference[1], array.shape[1:], geometry, job.case, job.tolerance, rel,
                             what, found)
    # One channel per file is checked while listing; files that may hold several (RGB) are counted here.
    if job.multi_channel_files and all_read and job.images and channels != job.num_channels:
        files = ", ".join(relative_name(p, job.folder) for p in job.images)
        message = f"{files} hold {channels} channel(s); dataset.json's channel_names declares {job.num_channels}"
        found.append(problem("wrong_channel_count", message, job.case, relative_name(job.images[0], job.folder)))
    return None if reference is None else reference[:2]


def _check_values(array: np.ndarray, path: Path, case: str, rel: str, found: list[Problem]) -> None:
    """NaN/Inf and constant channels of a ``(C, Z, Y, X)`` array read from ``path``."""
    check_finite(array, path, case, rel, found)
    for index, channel in enumerate(array):
        finite = channel[np.isfinite(channel)]
        if finite.size and finite.min() == finite.max():
            which = f"channel {index} " if array.shape[0] > 1 else ""
            found.append(problem("constant_image", f"{which}holds the value {float(finite.min()):g} everywhere", case,
                                 rel))


def check_finite(array: np.ndarray, path: Path, case: str, rel: str, found: list[Problem],
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


def check_spacing(geometry: Geometry, case: str, rel: str, found: list[Problem]) -> None:
    """A spacing that is zero, negative or not finite."""
    spacing = np.asarray(geometry.spacing)
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        found.append(problem("invalid_spacing", f"spacing {list(geometry.spacing)} (z, y, x mm)", case, rel))


def _check_label(job: CaseJob, io: ImageIO, reference: tuple[tuple[int, ...], Geometry] | None,
                 found: list[Problem]) -> None:
    rel = relative_name(job.label, job.folder)
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
        compare_geometry(reference[0], reference[1], seg.shape, geometry, job.case, job.tolerance, rel,
                         "image vs label", found)


def _value_counts(seg: np.ndarray) -> tuple[list[int], list[int]]:
    """Sorted distinct values and their voxel counts (bincount for the usual small non-negative labels)."""
    if seg.size and seg.dtype.kind in "ui" and seg.min() >= 0 and seg.max() < 65536:
        counts = np.bincount(seg.ravel())
        values = np.flatnonzero(counts)
        return values.tolist(), counts[values].tolist()
    values, counts = np.unique(seg, return_counts=True)
    return [int(v) for v in values], counts.tolist()


def compare_geometry(shape_a: tuple[int, ...], geo_a: Geometry, shape_b: tuple[int, ...], geo_b: Geometry,
                     case: str, tolerance: float, rel: str, what: str, found: list[Problem]) -> None:
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
