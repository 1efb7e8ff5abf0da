"""Extract a dataset's fingerprint: one case per worker, aggregated in the main process.

Entry point: :func:`extract_fingerprint` (writes ``preprocessed/<Dataset>/fingerprint.json``). As the first stage
to read a dataset it refuses what ``verify`` calls an error and costs nothing here: a wrong file layout or
numTraining, image/label geometry mismatches, NaN/Inf voxels as read (see :mod:`AutoSegNetLib.dataset.verify`).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from AutoSegNetLib.dataset import Case, RawDataset
from AutoSegNetLib.dataset.verify import read_checked_case, require_training_layout
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.fingerprint.crop import box_shape, nonzero_bounding_box
from AutoSegNetLib.fingerprint.format import FINGERPRINT_FILE, CaseFingerprint, Fingerprint
from AutoSegNetLib.fingerprint.intensity import (
    DEFAULT_SEED,
    TOTAL_FOREGROUND_SAMPLES,
    WeightedSample,
    intensity_statistics,
    sample_foreground,
    samples_per_case,
)
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.stop import StopRequest, StopRequested
from AutoSegNetLib.utils.workers import run_parallel
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)

#: Merge the per-case samples once this many (value, count) pairs have piled up, to bound memory.
_MERGE_EVERY = 5_000_000


@dataclass
class CaseAnalysis:
    """What a worker sends back for one case: its geometry and its foreground draw per channel."""

    case: CaseFingerprint
    samples: list[WeightedSample]


def analyze_case(dataset: RawDataset, case: Case, num_samples: int, seed: int = DEFAULT_SEED) -> CaseAnalysis:
    """Read one case, crop it to the non-zero box and draw its foreground intensities.

    Foreground = label value > 0, except the ``ignore`` label (unannotated voxels are not foreground).
    """
    image, seg, geometry = read_checked_case(dataset, case, stored_values=False)  # preprocessing checks those
    if seg is None:
        raise AutoSegNetError(f"Training case {case.name!r} has no label file; every training case needs one.")
    if seg.shape != image.shape[1:]:
        raise AutoSegNetError(
            f"Case {case.name!r}: label shape {list(seg.shape)} differs from image shape {list(image.shape[1:])} "
            "(Z, Y, X). Run `autosegnet verify` to list every mismatch."
        )
    shape_before = [int(n) for n in image.shape[1:]]
    box = nonzero_bounding_box(image)
    image, seg = image[(slice(None), *box)], seg[box]
    foreground = seg > 0
    ignore = dataset.dataset_json.ignore_label
    if ignore is not None:
        foreground &= seg != ignore
    shape_after = box_shape(box)
    record = CaseFingerprint(
        name=case.name,
        spacing=[float(s) for s in geometry.spacing],
        shape_before_crop=shape_before,
        shape_after_crop=shape_after,
        relative_size_after_crop=math.prod(shape_after) / math.prod(shape_before),
        foreground_voxels=int(foreground.sum()),
        orientation=None if geometry.is_2d else geometry.orientation_code(),
    )
    return CaseAnalysis(record, sample_foreground(image, foreground, num_samples, seed))


def extract_fingerprint(workspace: Workspace, dataset: str | int, num_workers: int = 1,
                        reporter: ProgressReporter | None = None, seed: int = DEFAULT_SEED,
                        total_samples: float = TOTAL_FOREGROUND_SAMPLES, stop: StopRequest | None = None
                        ) -> Fingerprint:
    """Fingerprint the training cases of ``dataset`` and write ``preprocessed/<Dataset>/fingerprint.json``.

    ``num_workers`` processes each hold one case at a time (0 or 1: in this process); a worker that fails or
    dies fails the run with the case's name. The result does not depend on ``num_workers``.
    ``total_samples`` foreground voxels are drawn per channel, spread evenly over the cases (nnU-Net: 10e7).
    Once ``stop`` is requested no further case is started and :class:`StopRequested` is raised; nothing is
    written then.
    """
    reporter = reporter or ProgressReporter("none")
    name = workspace.resolve_dataset(dataset)
    raw = RawDataset.open(workspace.raw / name)
    require_training_layout(raw.folder)
    cases = raw.training_cases()
    if not cases:
        raise AutoSegNetError(f"{raw.folder} has no training cases (imagesTr is empty or missing).")
    num_samples = samples_per_case(len(cases), total_samples)
    num_channels = raw.dataset_json.num_channels
    started = time.perf_counter()
    reporter.emit("stage", stage="fingerprint", dataset=name, cases=len(cases), workers=num_workers)

    work = functools.partial(analyze_case, raw, num_samples=num_samples, seed=seed)
    results = run_parallel(work, cases, num_workers, describe=lambda c: f"case {c.name!r} of {name}", stop=stop)
    records, pooled = _collect(results, cases, num_channels, name, reporter)
    fingerprint = Fingerprint(
        dataset_name=name,
        num_channels=num_channels,
        cases=[records[c.name] for c in cases],
        foreground_intensity_properties=_statistics(pooled.result(), raw),
        median_relative_size_after_crop=float(np.median([r.relative_size_after_crop for r in records.values()])),
        foreground_samples_per_case=num_samples,
        seed=seed,
    )
    target = workspace.preprocessed / name / FINGERPRINT_FILE
    fingerprint.save(target)
    seconds = time.perf_counter() - started
    log.info("Fingerprint of %d cases written to %s (%.1f s)", len(cases), target, seconds)
    reporter.emit("done", stage="fingerprint", dataset=name, path=str(target), seconds=round(seconds, 2))
    return fingerprint


def _collect(results: Iterable[tuple[Case, CaseAnalysis]], cases: list[Case], num_channels: int, name: str,
             reporter: ProgressReporter) -> tuple[dict[str, CaseFingerprint], _PooledSamples]:
    """The cases' records and their pooled foreground samples, as the workers finish them; raises
    :class:`StopRequested` when a stop request left cases out."""
    records: dict[str, CaseFingerprint] = {}
    pooled = _PooledSamples(num_channels)
    for done, (case, analysis) in enumerate(results, start=1):
        if len(analysis.samples) != num_channels:
            raise AutoSegNetError(
                f"Case {case.name!r} has {len(analysis.samples)} channel(s) but dataset.json declares "
                f"{num_channels} in 'channel_names'. Run `autosegnet verify {name}`."
            )
        records[case.name] = analysis.case
        pooled.add(analysis.samples)
        reporter.emit("case", stage="fingerprint", case=case.name, done=done, total=len(cases))
    if len(records) < len(cases):
        raise StopRequested(f"fingerprint stopped after {len(records)} of {len(cases)} cases; "
                            f"{FINGERPRINT_FILE} not written")
    return records, pooled


class _PooledSamples:
    """Per-channel union of the cases' draws, merged whenever enough pairs are waiting."""

    def __init__(self, num_channels: int) -> None:
        self._waiting: list[list[WeightedSample]] = [[] for _ in range(num_channels)]
        self._size = 0

    def add(self, samples: list[WeightedSample]) -> None:
        for waiting, sample in zip(self._waiting, samples):
            waiting.append(sample)
            self._size += sample.values.size
        if self._size > _MERGE_EVERY:
            self._merge()

    def _merge(self) -> None:
        self._waiting = [[WeightedSample.merge(w)] for w in self._waiting]
        self._size = sum(w[0].values.size for w in self._waiting)

    def result(self) -> list[WeightedSample]:
        self._merge()
        return [w[0] for w in self._waiting]


def _statistics(samples: list[WeightedSample], raw: RawDataset) -> dict:
    stats = {}
    for channel, sample in enumerate(samples):
        if sample.total == 0:
            raise AutoSegNetError(
                f"No foreground voxels in any training case of {raw.folder} (channel {channel}): every label map "
                "is background only. Check labelsTr and the label values in dataset.json."
            )
        stats[str(channel)] = intensity_statistics(sample)
    return stats
