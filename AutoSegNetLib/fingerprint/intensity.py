"""Foreground intensity sampling and statistics, kept compact as (value, count) pairs.

nnU-Net draws ``num_samples`` foreground voxels per case and channel *with replacement*
(``RandomState(1234).choice``), concatenates the draws of all cases (``10e7`` in total) and computes mean,
std, median and the 0.5 / 99.5 percentiles of that long array. We draw the very same indices, but keep
each case's draw as sorted distinct values with their multiplicities (a :class:`WeightedSample`). The
statistics of a weighted sample equal those of the expanded array, while memory is bounded by the number of
distinct intensities (a few thousand for CT) instead of ``10e7`` floats.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from AutoSegNetLib.fingerprint.format import IntensityStatistics

#: nnU-Net's seed for the foreground draw of every case (each case restarts the generator).
DEFAULT_SEED = 1234
#: nnU-Net's total number of sampled foreground voxels per channel over the whole dataset.
TOTAL_FOREGROUND_SAMPLES = 10e7
_CHUNK = 1 << 20


@dataclass
class WeightedSample:
    """Sorted distinct ``values`` (float64) and how often each was drawn (``counts``, int64)."""

    values: np.ndarray
    counts: np.ndarray

    @classmethod
    def empty(cls) -> WeightedSample:
        return cls(np.zeros(0, np.float64), np.zeros(0, np.int64))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @classmethod
    def merge(cls, samples: Iterable[WeightedSample]) -> WeightedSample:
        """One sample holding all draws of ``samples`` (order does not matter)."""
        samples = [s for s in samples if s.values.size]
        if not samples:
            return cls.empty()
        values, inverse = np.unique(np.concatenate([s.values for s in samples]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([s.counts for s in samples]), minlength=values.size)
        return cls(values, np.rint(counts).astype(np.int64))


def samples_per_case(num_cases: int, total: float = TOTAL_FOREGROUND_SAMPLES) -> int:
    """Foreground voxels drawn per case and channel: ``int(total // num_cases)`` as in nnU-Net."""
    return int(total // max(num_cases, 1))


def sample_foreground(image: np.ndarray, foreground: np.ndarray, num_samples: int,
                      seed: int = DEFAULT_SEED) -> list[WeightedSample]:
    """Draw ``num_samples`` foreground voxels with replacement from each channel of ``image``.

    ``image`` is ``(C, Z, Y, X)``, ``foreground`` a boolean ``(Z, Y, X)`` mask. One generator seeded with
    ``seed`` serves the channels in order, so the draws equal nnU-Net's ``rs.choice(voxels, num_samples)``.
    A case without foreground contributes an empty sample.
    """
    rng = np.random.RandomState(seed)
    out = []
    for channel in image:
        voxels = channel[foreground]
        if voxels.size == 0 or num_samples <= 0:
            out.append(WeightedSample.empty())
            continue
        hits = _draw_counts(rng, voxels.size, num_samples)
        drawn = hits > 0
        values, inverse = np.unique(voxels[drawn].astype(np.float64), return_inverse=True)
        counts = np.bincount(inverse, weights=hits[drawn], minlength=values.size)
        out.append(WeightedSample(values, np.rint(counts).astype(np.int64)))
    return out


def _draw_counts(rng: np.random.RandomState, population: int, num_samples: int) -> np.ndarray:
    """How often each of ``population`` items is hit by ``rng.choice(population, num_samples)``.

    Drawn in chunks (the generator yields the same sequence as one big draw), so a worker holds at most
    ``_CHUNK`` indices instead of all ``num_samples`` (33 million for a 3-case dataset).
    """
    hits = np.zeros(population, np.int64)
    for start in range(0, num_samples, _CHUNK):
        size = min(_CHUNK, num_samples - start)
        hits += np.bincount(rng.randint(0, population, size=size), minlength=population)
    return hits


def weighted_percentiles(sample: WeightedSample, percentiles: Iterable[float]) -> list[float]:
    """``np.percentile(expanded, q)`` (linear interpolation) of the expanded sample, for each ``q``."""
    cumulative = np.cumsum(sample.counts)
    n = int(cumulative[-1])
    result = []
    for q in percentiles:
        position = q / 100.0 * (n - 1)
        low = int(np.floor(position))
        high = min(low + 1, n - 1)
        v_low, v_high = sample.values[np.searchsorted(cumulative, [low, high], side="right")]
        result.append(float(v_low + (v_high - v_low) * (position - low)))
    return result


def intensity_statistics(sample: WeightedSample) -> IntensityStatistics:
    """Mean, median, std (population), min, max and 0.5 / 99.5 percentiles of a non-empty sample."""
    if sample.total == 0:
        raise ValueError("intensity statistics need at least one sampled voxel")
    weights = sample.counts / sample.total
    mean = float(np.dot(weights, sample.values))
    std = float(np.sqrt(np.dot(weights, (sample.values - mean) ** 2)))
    p005, median, p995 = weighted_percentiles(sample, (0.5, 50.0, 99.5))
    return IntensityStatistics(
        mean=mean, median=median, std=std, min=float(sample.values[0]), max=float(sample.values[-1]),
        percentile_00_5=p005, percentile_99_5=p995,
    )
