"""Patch size and batch size under a GPU memory budget.

1. Start from the target spacing's aspect ratio scaled to the volume of a 256^3 patch (2048^2 in 2D) and
   clip it to the median image shape.
2. Derive the topology (which pads the patch to multiples of ``2 ** pools``).
3. While the memory estimate is over budget, shrink the axis that is largest relative to the median shape
   by one pooling step and derive the topology again.
4. Spend what is left of the budget on the batch size, capped so one batch covers at most a fraction of the
   dataset's voxels, and never below the minimum batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.planning.topology import Topology, axis_to_shrink, pool_and_conv_props, shrink_axis

#: Edge of the cube (3D) / square (2D) whose volume the initial patch gets.
INITIAL_PATCH_EDGE = {3: 256, 2: 2048}


def initial_patch_size(spacing: Sequence[float], median_shape: Sequence[float]) -> np.ndarray:
    """Patch with the aspect ratio of ``1 / spacing`` and the volume of 256^3 (2048^2), clipped to the median."""
    dim = len(spacing)
    inverse = 1 / np.asarray(spacing, dtype=np.float64)
    volume = float(INITIAL_PATCH_EDGE[dim]) ** dim
    patch = [round(i) for i in inverse * (volume / np.prod(inverse)) ** (1 / dim)]
    return np.array([min(p, m) for p, m in zip(patch, median_shape[:dim])])


class ImagesTooSmallError(AutoSegNetError):
    """The median image is too small for a U-Net's first pooling step."""


def require_poolable(spacing: Sequence[float], median_shape: Sequence[float], min_feature_map_size: int,
                     configuration: str) -> None:
    """Raise :class:`ImagesTooSmallError` when the initial patch allows no pooling (a U-Net needs two stages).

    Pooling needs at least ``2 x min_feature_map_size`` voxels along two or more axes of similar spacing, or
    ``3 x min_feature_map_size`` along a single axis (see :mod:`~AutoSegNetLib.planning.topology`).
    """
    patch = initial_patch_size(spacing, median_shape)
    if pool_and_conv_props(spacing, patch, min_feature_map_size).num_stages >= 2:
        return
    shape = [int(round(n)) for n in median_shape[: len(spacing)]]
    raise ImagesTooSmallError(
        f"The images are too small to plan the {configuration} configuration: the median image, cropped to its "
        f"non-zero region and resampled to {[round(float(s), 4) for s in spacing]} mm, is {shape} voxels, but a "
        f"U-Net needs at least one pooling step: at least {2 * min_feature_map_size} voxels along two axes of "
        f"similar spacing, or at least {3 * min_feature_map_size} along one. Check that imagesTr holds the real "
        "images (not placeholders) and that the spacing in their headers is right."
    )


@dataclass(frozen=True)
class PatchFit:
    """A topology (incl. the patch) whose memory estimate fits, and that estimate (elements, batch 1)."""

    topology: Topology
    estimate: int


def fit_patch(spacing: Sequence[float], median_shape: Sequence[float], estimate: Callable[[Topology], int],
              too_large: Callable[[int], bool], min_feature_map_size: int) -> PatchFit:
    """Shrink the patch (one pooling step on the most oversized axis at a time) until ``too_large`` is False."""
    topology = pool_and_conv_props(spacing, initial_patch_size(spacing, median_shape), min_feature_map_size)
    current = estimate(topology)
    while too_large(current):
        axis = axis_to_shrink(topology.patch_size, median_shape[: len(spacing)])
        topology = shrink_axis(spacing, topology, axis, min_feature_map_size)
        if min(topology.patch_size) < 1:
            raise AutoSegNetError(
                f"No patch fits the GPU memory target (spacing {list(spacing)}): even a one-voxel-thick patch is "
                "estimated too large. Raise --gpu-memory-gb or choose a planner with a smaller network."
            )
        current = estimate(topology)
    return PatchFit(topology, current)


def batch_size_for(reference: float, estimate: int, reference_batch_size: int, dataset_voxels: float,
                   patch_size: Sequence[int], max_dataset_covered: float, min_batch_size: int) -> int:
    """Batch size from the memory headroom, capped at ``max_dataset_covered`` of the dataset's voxels.

    ``round`` is Python's (halves to even), as in nnU-Net: e.g. a cap of 292.5 gives 292.
    """
    batch = round(reference / estimate * reference_batch_size)
    cap = round(dataset_voxels * max_dataset_covered / np.prod(patch_size, dtype=np.float64))
    return int(max(min(batch, cap), min_batch_size))
