"""Sampled voxel positions of each class, used by training to draw patches that contain foreground."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_SAMPLES_PER_CLASS = 10_000
MIN_COVERAGE = 0.01  # but never fewer than 1% of a class's voxels
SEED = 1234


def location_key(target: int | Sequence[int]) -> str:
    """Key of a class (``"2"``) or a region (``"1,2,3"``, its label values) in ``class_locations``."""
    if isinstance(target, (int, np.integer)):
        return str(int(target))
    return ",".join(str(int(v)) for v in target)


def sample_class_locations(seg: np.ndarray, targets: Sequence[int | Sequence[int]], seed: int = SEED,
                           max_samples: int = MAX_SAMPLES_PER_CLASS, min_coverage: float = MIN_COVERAGE
                           ) -> dict[str, np.ndarray]:
    """``{key: (n, 4) int32 [c, z, y, x]}`` for each class or region of ``seg`` ``(1, Z, Y, X)``.

    A class with ``N`` voxels gets ``max(min(max_samples, N), ceil(min_coverage * N))`` positions drawn
    without replacement (sorted, deterministic for a given ``seed``); an absent class gets an empty array.
    A region (a list of label values) counts the voxels of any of its labels.
    """
    rng = np.random.default_rng(seed)
    flat = seg.reshape(-1)
    out: dict[str, np.ndarray] = {}
    for target in targets:
        values = [target] if isinstance(target, (int, np.integer)) else list(target)
        mask = flat == values[0] if len(values) == 1 else np.isin(flat, values)
        where = np.flatnonzero(mask)
        n = min(max_samples, where.size)
        n = max(n, int(np.ceil(where.size * min_coverage)))
        if n < where.size:
            where = np.sort(rng.choice(where, size=n, replace=False))
        out[location_key(target)] = np.stack(np.unravel_index(where, seg.shape), axis=1).astype(np.int32)
    return out
