"""Resampling between voxel grids: images (spline order 3), label maps (order 1 on one-hot), probabilities.

Pure functions on NumPy arrays; spatial axes ``(z, y, x)`` (any axis order works, spacings follow it).

Grid convention (as skimage's ``resize`` used by nnU-Net): voxel *centres* are aligned with the image
extent, so output index ``o`` samples input coordinate ``(o + 0.5) * n_in / n_out - 0.5``; outside the grid
the edge value is repeated (``mode="nearest"``).

Anisotropic data (largest/smallest spacing > threshold, 3 by default) is resampled separately: in-plane with
the given order, then along the coarse axis with ``order_z`` (0 = nearest), because interpolating across
thick slices with a cubic spline invents structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import affine_transform, find_objects

DEFAULT_ANISOTROPY_THRESHOLD = 3.0


def compute_new_shape(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> tuple[int, ...]:
    """Voxel counts after resampling ``shape`` from ``spacing`` to ``new_spacing`` (mm): ``round(n * s / s')``."""
    if not (len(shape) == len(spacing) == len(new_spacing)):
        raise ValueError(f"shape {tuple(shape)}, spacing {tuple(spacing)} and new spacing {tuple(new_spacing)} "
                         "must have the same length")
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, new_spacing))


def separate_axis(spacing: Sequence[float], new_spacing: Sequence[float],
                  threshold: float = DEFAULT_ANISOTROPY_THRESHOLD) -> int | None:
    """The coarse axis to resample on its own, or None (nnU-Net's rule).

    The current spacing is checked first, then the target spacing; if the largest/smallest ratio exceeds
    ``threshold`` the (single) axis with the largest spacing is returned. Two or more equally coarse axes
    mean there is no single out-of-plane axis, so None.
    """
    for candidate in (np.asarray(spacing, float), np.asarray(new_spacing, float)):
        if candidate.max() / candidate.min() > threshold:
            coarse = np.flatnonzero(candidate == candidate.max())
            return int(coarse[0]) if coarse.size == 1 else None
    return None


def resample_image(data: np.ndarray, new_shape: Sequence[int], spacing: Sequence[float],
                   new_spacing: Sequence[float], order: int = 3, order_z: int = 0,
                   threshold: float = DEFAULT_ANISOTROPY_THRESHOLD, clip: bool = True) -> np.ndarray:
    """Resample every channel of ``data`` ``(C, Z, Y, X)`` to ``(C, *new_shape)`` float32.

    ``spacing``/``new_spacing`` (mm) only decide whether the coarse axis is handled separately. With
    ``clip`` each channel is clipped to its input range (no spline overshoot), as nnU-Net does.
    """
    new_shape = tuple(int(n) for n in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data.astype(np.float32, copy=False)
    axis = separate_axis(spacing, new_spacing, threshold)
    out = np.empty((data.shape[0], *new_shape), dtype=np.float32)
    for c in range(data.shape[0]):
        channel = np.asarray(data[c], dtype=np.float32)
        out[c] = resample_volume(channel, new_shape, order, order_z, axis)
        if clip and channel.size:
            np.clip(out[c], channel.min(), channel.max(), out=out[c])
    return out


def resample_probabilities(probs: np.ndarray, new_shape: Sequence[int], spacing: Sequence[float],
                           new_spacing: Sequence[float], order: int = 1, order_z: int = 0,
                           threshold: float = DEFAULT_ANISOTROPY_THRESHOLD) -> np.ndarray:
    """Resample class probabilities (or logits) ``(K, Z, Y, X)`` to ``(K, *new_shape)`` float32 (order 1)."""
    return resample_image(probs, new_shape, spacing, new_spacing, order, order_z, threshold, clip=False)


def resample_seg(seg: np.ndarray, new_shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float],
                 order: int = 1, order_z: int = 0, threshold: float = DEFAULT_ANISOTROPY_THRESHOLD) -> np.ndarray:
    """Resample a label map ``(Z, Y, X)`` to ``new_shape`` via its one-hot encoding; returns int16.

    Each label's indicator is interpolated with ``order`` and every output voxel takes the label with the
    largest value (ties go to the higher label value), so no label appears that was not in the input and
    labels do not bleed into each other. With order <= 1 each label is only resampled inside its own
    bounding box, so many small labels cost little.
    """
    new_shape = tuple(int(n) for n in new_shape)
    if tuple(seg.shape) == new_shape:
        return seg.astype(np.int16, copy=False)
    axis = separate_axis(spacing, new_spacing, threshold)
    local = order <= 1 and order_z <= 1
    best = np.full(new_shape, -1.0, dtype=np.float32)
    out = np.zeros(new_shape, dtype=np.int16)
    lo = int(seg.min()) if seg.size else 0
    boxes = find_objects(seg.astype(np.int64) - (lo - 1)) if local else None  # one pass for all label boxes
    for label in label_values_in(seg):
        if local:
            in_box, out_box = _label_boxes(boxes[label - lo], seg.shape, new_shape)
            mask = (seg[in_box] == label).astype(np.float32)
            values = resample_region(mask, seg.shape, new_shape, [s.start for s in in_box], [s.start for s in out_box],
                                     [s.stop - s.start for s in out_box], order, order_z, axis)
        else:
            out_box = tuple(slice(0, n) for n in new_shape)
            values = resample_volume((seg == label).astype(np.float32), new_shape, order, order_z, axis)
        wins = values >= best[out_box]
        best[out_box][wins] = values[wins]
        out[out_box][wins] = label
    return out


def label_values_in(seg: np.ndarray) -> list[int]:
    """Distinct values of an integer label map, ascending (bincount when values are small: faster than unique)."""
    if seg.size == 0:
        return []
    lo, hi = int(seg.min()), int(seg.max())
    if hi - lo < 65536:
        counts = np.bincount(seg.ravel().astype(np.intp) - lo, minlength=hi - lo + 1)
        return (np.flatnonzero(counts) + lo).tolist()
    return np.unique(seg).tolist()


def resample_volume(volume: np.ndarray, new_shape: Sequence[int], order: int, order_z: int = 0,
                    axis: int | None = None) -> np.ndarray:
    """Resample one channel ``(Z, Y, X)`` to ``new_shape`` (float32); ``axis`` is done separately with ``order_z``."""
    new_shape = tuple(int(n) for n in new_shape)
    return resample_region(volume, volume.shape, new_shape, (0,) * volume.ndim, (0,) * volume.ndim, new_shape,
                           order, order_z, axis)


def resample_region(block: np.ndarray, full_in_shape: Sequence[int], full_out_shape: Sequence[int],
                    in_start: Sequence[int], out_start: Sequence[int], out_shape: Sequence[int],
                    order: int, order_z: int, axis: int | None) -> np.ndarray:
    """One window of the resampling of a ``full_in_shape`` channel to ``full_out_shape`` (float32).

    ``block`` is the part of the input starting at ``in_start``; the result is the output window of
    ``out_shape`` starting at ``out_start``. The caller makes sure the block covers every input voxel the
    window's interpolation touches. ``axis`` (or None) is resampled after the other axes, with ``order_z``.
    """
    grid = [_Axis(int(i), int(o), int(a), int(b), int(n))
            for i, o, a, b, n in zip(full_in_shape, full_out_shape, in_start, out_start, out_shape)]
    if axis is None:
        return _sample(block, grid, order)
    # in-plane first (slice by slice along ``axis``), then along ``axis`` with order_z
    plane = [grid[a] for a in range(block.ndim) if a != axis]
    moved = np.moveaxis(block, axis, 0)
    inplane = np.empty((moved.shape[0], *(g.n for g in plane)), dtype=np.float32)
    for k in range(moved.shape[0]):
        inplane[k] = _sample(moved[k], plane, order)
    keep = [_Axis(g.n, g.n, 0, 0, g.n) for g in plane]
    return np.moveaxis(_sample(inplane, [grid[axis], *keep], order_z), 0, axis)


@dataclass(frozen=True)
class _Axis:
    """One axis of a resampling window: full input/output lengths, block/window starts, window length ``n``."""

    n_in: int
    n_out: int
    in_start: int
    out_start: int
    n: int

    @property
    def identity(self) -> bool:
        return self.n_in == self.n_out and self.in_start == self.out_start

    def coordinates(self) -> tuple[float, float]:
        """``(scale, offset)``: output index ``o`` of the window samples block coordinate ``o * scale + offset``."""
        scale = self.n_in / self.n_out
        return scale, (self.out_start + 0.5) * scale - 0.5 - self.in_start

    def nearest(self) -> np.ndarray:
        """Block indices of the nearest input voxel, exact in integers (half-way rounds up, like scipy)."""
        o = np.arange(self.out_start, self.out_start + self.n, dtype=np.int64)
        return np.clip((2 * o + 1) * self.n_in // (2 * self.n_out), 0, self.n_in - 1) - self.in_start


def _sample(block: np.ndarray, grid: list[_Axis], order: int) -> np.ndarray:
    """Resample ``block`` onto the window described by ``grid`` with spline ``order`` (edge values repeated)."""
    block = np.asarray(block, dtype=np.float32)
    if all(g.identity and g.n == size for g, size in zip(grid, block.shape)):
        return block.copy()
    if order == 0:
        for a, g in enumerate(grid):
            if not (g.identity and g.n == block.shape[a]):
                block = np.take(block, g.nearest(), axis=a)
        return np.ascontiguousarray(block)
    scale, offset = (np.array(v, dtype=np.float64) for v in zip(*(g.coordinates() for g in grid)))
    return affine_transform(block, scale, offset=offset, output_shape=tuple(g.n for g in grid), order=order,
                            mode="nearest", output=np.float32)


def _label_boxes(box: tuple[slice, ...], shape: tuple[int, ...], new_shape: tuple[int, ...]
                 ) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """For a label inside ``box``: the input block (box + 2 voxels) and the output window where an order <= 1
    resampling of its indicator can be non-zero."""
    in_box, out_box = [], []
    for extent, n_in, n_out in zip(box, shape, new_shape):
        lo, hi = extent.start, extent.stop
        scale = n_in / n_out
        # output o samples input (o + 0.5) * scale - 0.5; it can see the label only if that is in [lo - 1, hi]
        o_lo = 0 if lo == 0 else max(0, int(np.ceil((lo - 0.5) / scale - 0.5)) - 1)
        o_hi = n_out if hi == n_in else min(n_out, int(np.floor((hi + 0.5) / scale - 0.5)) + 2)
        in_box.append(slice(max(0, lo - 2), min(n_in, hi + 2)))
        out_box.append(slice(o_lo, max(o_hi, o_lo + 1)))
    return tuple(in_box), tuple(out_box)
