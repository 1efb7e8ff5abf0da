"""Target spacing, the axis transpose and shapes after resampling.

Spacings and shapes are in the raw array order ``(z, y, x)`` (mm / voxels) unless a function says
"transposed".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: An axis counts as anisotropic when its spacing is more than this many times coarser than the others'.
ANISOTROPY_THRESHOLD = 3.0


def fullres_target_spacing(spacings: np.ndarray, shapes: np.ndarray,
                           threshold: float = ANISOTROPY_THRESHOLD) -> np.ndarray:
    """The ``3d_fullres`` spacing ``(z, y, x)`` mm: the median spacing, except for a strongly anisotropic axis.

    ``spacings`` ``(N, 3)`` mm and ``shapes`` ``(N, 3)`` (after cropping), one row per case. If the coarsest
    median axis is more than ``threshold`` x coarser than the others *and* its median size is more than
    ``threshold`` x smaller than the others', that axis takes the 10th percentile of its spacings instead
    (finer, so fewer interpolation artefacts), but never finer than the other axes' coarsest spacing.
    """
    spacings = np.asarray(spacings, dtype=np.float64)
    target = np.percentile(spacings, 50, axis=0)
    median_size = np.percentile(np.asarray(shapes, dtype=np.float64), 50, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    coarsest_other = max(target[i] for i in others)
    aniso_spacing = target[worst] > threshold * coarsest_other
    aniso_voxels = median_size[worst] * threshold < min(median_size[i] for i in others)
    if aniso_spacing and aniso_voxels:
        tenth = np.percentile(spacings[:, worst], 10)
        if tenth < coarsest_other:
            tenth = max(coarsest_other, tenth) + 1e-5
        target[worst] = tenth
    return target


def transpose_for(target_spacing: Sequence[float]) -> tuple[list[int], list[int]]:
    """``(transpose_forward, transpose_backward)``: the coarsest axis first, the others in their order."""
    coarsest = int(np.argmax(target_spacing))
    forward = [coarsest] + [i for i in range(len(target_spacing)) if i != coarsest]
    backward = [forward.index(i) for i in range(len(target_spacing))]
    return forward, backward


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> list[int]:
    """Shape after resampling from ``spacing`` to ``new_spacing`` (rounded per axis)."""
    return [int(round(old / new * s)) for s, old, new in zip(shape, spacing, new_spacing)]


def median_resampled_shape(spacings: np.ndarray, shapes: np.ndarray, new_spacing: Sequence[float]) -> np.ndarray:
    """Median ``(Z, Y, X)`` shape of the cases after resampling to ``new_spacing`` (may end in .5)."""
    new_shapes = [resampled_shape(shape, spacing, new_spacing) for spacing, shape in zip(spacings, shapes)]
    return np.median(np.asarray(new_shapes, dtype=np.float64), axis=0)
