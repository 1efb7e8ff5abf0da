"""Pure functions for the sliding window: tile start positions, the Gaussian importance map, padding.

All sizes are per spatial axis in array order (``(Z, Y, X)`` or ``(Y, X)``), in voxels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np


def compute_steps(image_size: Sequence[int], patch_size: Sequence[int], step_size: float) -> list[list[int]]:
    """Start positions of the tiles along each axis (nnU-Net's rule).

    Along an axis of length ``I`` with patch ``P <= I``, the number of tiles is
    ``ceil((I - P) / (P * step_size)) + 1`` and the starts are spread evenly from ``0`` to ``I - P``
    (rounded to whole voxels), so the first tile touches the start and the last tile the end of the axis.
    ``step_size`` is a fraction of the patch in ``(0, 1]``; smaller steps mean more overlap.
    """
    if len(image_size) != len(patch_size):
        raise ValueError(f"image_size {list(image_size)} and patch_size {list(patch_size)} differ in length.")
    if not 0 < step_size <= 1:
        raise ValueError(f"step_size must be in (0, 1], got {step_size}.")
    if any(i < p for i, p in zip(image_size, patch_size)):
        raise ValueError(f"image_size {list(image_size)} must be at least patch_size {list(patch_size)}; pad first.")
    steps = []
    for size, patch in zip(image_size, patch_size):
        n_steps = math.ceil((size - patch) / (patch * step_size)) + 1
        last_start = size - patch
        stride = last_start / (n_steps - 1) if n_steps > 1 else 0.0
        steps.append([int(np.round(stride * i)) for i in range(n_steps)])
    return steps


def tile_starts(image_size: Sequence[int], patch_size: Sequence[int], step_size: float) -> list[tuple[int, ...]]:
    """Every tile's start corner, first axis outermost (the product of :func:`compute_steps`)."""
    return list(itertools.product(*compute_steps(image_size, patch_size, step_size)))


def gaussian_importance_map(
    patch_size: Sequence[int], sigma_scale: float = 1.0 / 8, value_scaling_factor: float = 10.0
) -> np.ndarray:
    """Weights for blending overlapping tiles: a Gaussian centred on the patch, float32 of shape ``patch_size``.

    The same map that smoothing a unit impulse at the centre voxel (``size // 2``) with
    ``scipy.ndimage.gaussian_filter(sigma = size * sigma_scale, truncate=4, mode="constant")`` gives,
    rescaled so its maximum is ``value_scaling_factor``. Voxels beyond the filter's truncation radius
    (exactly zero there) get the smallest non-zero weight instead, so every voxel has a positive weight.
    Computed in closed form as an outer product of 1D kernels.
    """
    profiles = [_gaussian_profile(int(size), float(size) * sigma_scale) for size in patch_size]
    weights = np.ones((), dtype=np.float64)
    for axis, profile in enumerate(profiles):
        shape = [1] * len(profiles)
        shape[axis] = profile.size
        weights = weights * profile.reshape(shape)
    weights = weights / weights.max() * value_scaling_factor
    positive = weights > 0
    weights[~positive] = weights[positive].min()
    return weights.astype(np.float32)


def _gaussian_profile(size: int, sigma: float) -> np.ndarray:
    """``exp(-d^2 / (2 sigma^2))`` over a line of ``size`` voxels, ``d`` the distance to ``size // 2``,
    zero beyond scipy's truncation radius ``int(4 sigma + 0.5)``; a constant line when ``sigma == 0``."""
    distance = np.arange(size, dtype=np.float64) - size // 2
    if sigma <= 0:
        return np.where(distance == 0, 1.0, 0.0)
    radius = int(4.0 * sigma + 0.5)
    profile = np.exp(-0.5 * (distance / sigma) ** 2)
    profile[np.abs(distance) > radius] = 0.0
    return profile


def padding_for(image_size: Sequence[int], patch_size: Sequence[int]) -> list[tuple[int, int]]:
    """``(before, after)`` voxels per axis that bring ``image_size`` up to at least ``patch_size``.

    The image is centred: ``before = missing // 2``, ``after`` the rest (as batchgenerators' ``pad_nd_image``).
    """
    pads = []
    for size, patch in zip(image_size, patch_size):
        missing = max(0, int(patch) - int(size))
        pads.append((missing // 2, missing - missing // 2))
    return pads


def mirror_combinations(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """All test-time mirroring variants: ``()`` (no flip) first, then every non-empty combination of
    ``mirror_axes`` (spatial axis indices), by size then in ``itertools.combinations`` order."""
    axes = sorted(set(int(a) for a in mirror_axes))
    combos: list[tuple[int, ...]] = [()]
    for n in range(1, len(axes) + 1):
        combos.extend(itertools.combinations(axes, n))
    return combos
