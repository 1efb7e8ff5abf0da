"""The non-zero bounding box: the region of a case that holds any non-zero voxel in any channel.

nnU-Net fills holes in the non-zero mask before taking its bounding box; filling holes never moves a
bounding box (a hole lies inside it by definition), so the box is computed from the raw mask here.
"""

from __future__ import annotations

import numpy as np


def nonzero_bounding_box(image: np.ndarray) -> tuple[slice, ...]:
    """Slices ``(z, y, x)`` of the smallest box holding every voxel that is non-zero in some channel.

    ``image`` is ``(C, Z, Y, X)``. An all-zero image keeps its full extent.
    """
    mask = np.any(image != 0, axis=0)
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if hits.size == 0:
            return tuple(slice(0, n) for n in mask.shape)
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def box_shape(box: tuple[slice, ...]) -> list[int]:
    """``(Z, Y, X)`` size of a box from :func:`nonzero_bounding_box`."""
    return [s.stop - s.start for s in box]
