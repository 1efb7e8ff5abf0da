"""Staged label maps: integer *layers*, each placed at a ``(z, y, x)`` voxel offset on the case grid (possibly
overlapping or sticking out), plus an ordered list of ``(layer, value in the layer, label value)``.

:func:`compose_label` paints them in order (later wins), which is how several segment layers, a labelmap with its
own values or an already merged label map all travel from the caller (3D Slicer) to the engine without remapping
voxels on the caller's side. See :mod:`AutoSegNetLib.dataset.staged` for the staging folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LABEL_DTYPES = ("uint8", "uint16")


def label_dtype_for(num_labels: int) -> str:
    """The label map type for a table of ``num_labels`` foreground labels (values 1..N)."""
    return "uint8" if num_labels < 256 else "uint16"


@dataclass(frozen=True)
class LabelLayer:
    """An integer array ``(z, y, x)`` whose element ``[0, 0, 0]`` lies at voxel ``offset`` of the case grid."""

    array: np.ndarray
    offset: tuple[int, int, int] = (0, 0, 0)


def compose_label(shape: Sequence[int], dtype: str, layers: Sequence[LabelLayer],
                  values: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """Paint a ``(Z, Y, X)`` label map of ``dtype``: for each ``(layer, value, label)`` in order, the voxels where
    that layer holds ``value`` get ``label`` (later entries win where layers overlap). Parts of a layer outside the
    grid are dropped; voxels no entry covers are 0.
    """
    shape = tuple(int(s) for s in shape)
    out = np.zeros(shape, dtype)
    if len(layers) == 1 and _covers(layers[0], shape) and layers[0].array.dtype.itemsize <= 2 and values:
        # one layer on the whole grid (a labelmap, a merged label map, one shared segment layer): one table lookup
        array = layers[0].array
        unsigned = array.view(np.dtype(f"u{array.dtype.itemsize}"))
        lookup = np.zeros(1 << (8 * array.dtype.itemsize), dtype)
        info = np.iinfo(array.dtype)
        for _, value, label in values:
            if info.min <= value <= info.max:  # other values cannot occur in this layer
                lookup[int(np.array(value, array.dtype).view(unsigned.dtype))] = label
        return lookup[unsigned]
    for layer_index, value, label in values:
        layer = layers[layer_index]
        target, source = _overlap(layer, shape)
        if target is None:
            continue
        region = out[target]
        region[layer.array[source] == value] = label
    return out


def _covers(layer: LabelLayer, shape: tuple[int, ...]) -> bool:
    return tuple(layer.offset) == (0, 0, 0) and layer.array.shape == shape


def _overlap(layer: LabelLayer, shape: tuple[int, ...]) -> tuple[tuple[slice, ...] | None, tuple[slice, ...] | None]:
    target, source = [], []
    for offset, size, extent in zip(layer.offset, layer.array.shape, shape):
        start, stop = max(int(offset), 0), min(int(offset) + size, extent)
        if start >= stop:
            return None, None
        target.append(slice(start, stop))
        source.append(slice(start - int(offset), stop - int(offset)))
    return tuple(target), tuple(source)
