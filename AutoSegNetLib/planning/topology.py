"""Network topology from spacing and patch size: how often each axis is pooled, and the kernel sizes.

The rules (nnU-Net v2's ``get_pool_and_conv_props``):

- an axis may be pooled while its feature map is at least ``2 x min_feature_map_size`` voxels long and its
  current spacing is within a factor 2 of the finest current spacing among the poolable axes; if only one
  axis qualifies, its map must be at least ``3 x min_feature_map_size`` long;
- pooling halves the map (rounding up) and doubles the spacing of the pooled axes;
- a kernel is 3 along an axis once that axis's spacing is within 2x of the finest spacing, else 1; once 3 it
  stays 3; the bottleneck is 3 along every axis;
- the patch is then padded up to a multiple of ``2 ** pools`` per axis.

Per-axis lists follow the patch's axis order (transposed ``(Z, Y, X)`` or ``(Y, X)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Smallest edge (voxels) of a feature map in the bottleneck.
MIN_FEATURE_MAP_SIZE = 4


@dataclass(frozen=True)
class Topology:
    """Pooling and kernels for one patch size; ``strides[0]`` is all ones (the first stage does not pool)."""

    num_pool_per_axis: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    patch_size: tuple[int, ...]

    @property
    def num_stages(self) -> int:
        return len(self.strides)

    @property
    def divisible_by(self) -> tuple[int, ...]:
        """What every patch axis must be a multiple of: ``2 ** pools`` per axis."""
        return tuple(2 ** n for n in self.num_pool_per_axis)


def pad_to_multiple(shape: Sequence[float], multiple: Sequence[int]) -> tuple[int, ...]:
    """Round each axis of ``shape`` up to a multiple of ``multiple`` (sizes already divisible stay)."""
    return tuple(int(math.ceil(s / m) * m) if s % m else int(s) for s, m in zip(shape, multiple))


def pool_and_conv_props(spacing: Sequence[float], patch_size: Sequence[float],
                        min_feature_map_size: int = MIN_FEATURE_MAP_SIZE, max_numpool: int = 999999) -> Topology:
    """Pooling per stage, kernel sizes per stage and the padded patch for ``spacing`` (mm) and ``patch_size``."""
    dim = len(spacing)
    current_spacing = [float(s) for s in spacing]
    current_size = [float(s) for s in patch_size]
    strides: list[tuple[int, ...]] = [(1,) * dim]
    kernels: list[tuple[int, ...]] = []
    num_pool = [0] * dim
    kernel = [1] * dim
    while True:
        axes = _poolable_axes(current_spacing, current_size, num_pool, min_feature_map_size, max_numpool)
        if not axes:
            break
        finest = min(current_spacing)
        kernel = [3 if k == 3 or current_spacing[d] / finest < 2 else 1 for d, k in enumerate(kernel)]
        for axis in axes:
            num_pool[axis] += 1
            current_spacing[axis] *= 2
            current_size[axis] = math.ceil(current_size[axis] / 2)
        strides.append(tuple(2 if d in axes else 1 for d in range(dim)))
        kernels.append(tuple(kernel))
    kernels.append((3,) * dim)
    padded = pad_to_multiple(patch_size, [2 ** n for n in num_pool])
    return Topology(tuple(num_pool), tuple(strides), tuple(kernels), padded)


def _poolable_axes(spacing: list[float], size: list[float], num_pool: list[int], min_size: int,
                   max_numpool: int) -> list[int]:
    axes = [d for d in range(len(size)) if size[d] >= 2 * min_size]
    if not axes:
        return []
    finest = min(spacing[d] for d in axes)
    axes = [d for d in axes if spacing[d] / finest < 2 and num_pool[d] < max_numpool]
    if len(axes) == 1 and size[axes[0]] < 3 * min_size:
        return []
    return axes


def shrink_axis(spacing: Sequence[float], topology: Topology, axis: int,
                min_feature_map_size: int = MIN_FEATURE_MAP_SIZE) -> Topology:
    """The topology after making ``axis`` of the patch one pooling step smaller.

    The step is what the *smaller* patch must be divisible by (not the current one), so no valid size is
    skipped: e.g. 256 with 5 pools shrinks to 224 (a multiple of 32 that still allows 5 pools), not 192.
    """
    trial = list(topology.patch_size)
    trial[axis] -= topology.divisible_by[axis]
    step = pool_and_conv_props(spacing, trial, min_feature_map_size).divisible_by[axis]
    patch = list(topology.patch_size)
    patch[axis] -= step
    return pool_and_conv_props(spacing, patch, min_feature_map_size)


def axis_to_shrink(patch_size: Sequence[int], median_shape: Sequence[float]) -> int:
    """The axis whose patch is largest relative to the median image (the last one on ties)."""
    ratios = [p / m for p, m in zip(patch_size, median_shape)]
    return int(np.argsort(ratios, kind="stable")[-1])
