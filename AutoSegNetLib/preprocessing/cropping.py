"""Crop a case to the non-zero region of its channels, and put arrays back into the uncropped frame.

A bounding box is a list of ``[start, stop)`` pairs, one per spatial axis ``(z, y, x)``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_fill_holes

OUTSIDE_LABEL = -1  # label of voxels outside the non-zero region that were background


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """``(Z, Y, X)`` bool: voxels where any channel of ``data`` ``(C, Z, Y, X)`` is non-zero, holes filled."""
    mask = np.any(data != 0, axis=0)
    return binary_fill_holes(mask)


def bbox_of(mask: np.ndarray) -> list[list[int]]:
    """Bounding box ``[[start, stop), ...]`` of the True voxels; the whole array when there are none."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(np.any(mask, axis=other))
        box.append([int(hits[0]), int(hits[-1]) + 1] if hits.size else [0, mask.shape[axis]])
    return box


def slices_of(bbox: list[list[int]]) -> tuple[slice, ...]:
    return tuple(slice(lo, hi) for lo, hi in bbox)


def crop_to_nonzero(data: np.ndarray, seg: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, list[list[int]]]:
    """Crop ``data`` ``(C, Z, Y, X)`` and ``seg`` ``(Z, Y, X)`` to the non-zero bounding box.

    Returns ``(data, seg, mask, bbox)``: cropped copies, the cropped non-zero mask ``(z, y, x)`` bool and the
    box. In ``seg`` (int16) background voxels outside the non-zero mask become :data:`OUTSIDE_LABEL`.
    """
    mask = nonzero_mask(data)
    bbox = bbox_of(mask)
    box = slices_of(bbox)
    mask = mask[box]
    data = np.ascontiguousarray(data[(slice(None), *box)])
    if seg is not None:
        seg = seg[box].astype(np.int16)
        seg[(seg == 0) & ~mask] = OUTSIDE_LABEL
    return data, seg, mask, bbox


def uncrop(array: np.ndarray, bbox: list[list[int]], full_shape: tuple[int, ...],
           fill: float | np.ndarray = 0) -> np.ndarray:
    """Place ``array`` ``(K, z, y, x)`` into a new ``(K, *full_shape)`` array at ``bbox``.

    ``fill`` is the value outside the box: a scalar, or one value per channel ``(K,)``.
    """
    out = np.empty((array.shape[0], *full_shape), dtype=array.dtype)
    out[...] = np.reshape(fill, (-1,) + (1,) * len(full_shape)) if np.ndim(fill) else fill
    out[(slice(None), *slices_of(bbox))] = array
    return out
