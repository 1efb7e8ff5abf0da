"""Patch sampling from preprocessed cases, with nnU-Net's foreground oversampling and border padding.

A patch is cut from a case's memory-mapped ``(C, Z, Y, X)`` array; where it leaves the array it is padded with
0 (data) and -1 (label, "outside"). 3D configurations cut ``(C, *P)`` boxes; 2D configurations pick a slice
``z`` of the 3D array first and cut ``(C, Y, X)`` boxes from it. The sampled patch is larger than the network's
patch by ``need_to_pad`` (room for rotation and scaling), split evenly around the case.

Oversampling (nnU-Net's ``get_do_oversample``): sample ``i`` of a global batch of ``B`` is centred on a voxel of a
random class present in its case when ``i >= round(B * (1 - oversample_foreground))``, i.e. the last third of
every batch for the default 0.33. The decision uses the index in the *global* batch, so a batch split over
several processes (DDP) gets exactly the samples a single process would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class CaseSource(Protocol):
    """What the sampler needs from a dataset (e.g. ``preprocessing.storage.PreprocessedDataset``)."""

    def load_case(self, name: str) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]: ...


def is_forced_foreground(sample_index: int, batch_size: int, oversample_foreground: float) -> bool:
    """Whether sample ``sample_index`` of a (global) batch must contain foreground (nnU-Net's rule)."""
    return not sample_index < round(batch_size * (1 - oversample_foreground))


def box_bounds(data_shape: Sequence[int], patch_size: Sequence[int], need_to_pad: Sequence[int]
               ) -> tuple[list[int], list[int]]:
    """Lowest and highest allowed lower corner per axis, letting the patch leave the case by ``need_to_pad``
    (split evenly) and always by enough to fit a patch larger than the case."""
    pad = [max(int(n), int(p) - int(s)) for n, p, s in zip(need_to_pad, patch_size, data_shape)]
    lows = [-n // 2 for n in pad]
    highs = [s + n // 2 + n % 2 - p for s, n, p in zip(data_shape, pad, patch_size)]
    return lows, highs


def crop_padded(array: np.ndarray, lower: Sequence[int], size: Sequence[int], pad_value: float) -> np.ndarray:
    """``array[:, lower:lower+size]`` over the trailing axes, padded with ``pad_value`` where it leaves the array.

    ``array`` is ``(C, *S)`` (memory maps are read only inside the valid region); returns ``(C, *size)``.
    """
    spatial = array.shape[1:]
    valid_lo = [max(0, lo) for lo in lower]
    valid_hi = [min(s, lo + n) for s, lo, n in zip(spatial, lower, size)]
    crop = np.array(array[(slice(None), *[slice(a, b) for a, b in zip(valid_lo, valid_hi)])])  # a writable copy
    padding = [(0, 0)] + [(a - lo, lo + n - b) for a, b, lo, n in zip(valid_lo, valid_hi, lower, size)]
    if any(before or after for before, after in padding):
        crop = np.pad(crop, padding, mode="constant", constant_values=pad_value)
    return crop


class PatchSampler:
    """Cuts one training patch at a time from a set of cases.

    ``patch_size``: the sampled (possibly enlarged) spatial size, 2 or 3 axes; ``final_patch_size``: the network's
    patch; the difference is the padding budget at the case borders. ``ignore_label`` is never chosen as the
    class to centre on.
    """

    def __init__(self, dataset: CaseSource, case_names: Sequence[str], patch_size: Sequence[int],
                 final_patch_size: Sequence[int], batch_size: int, oversample_foreground: float,
                 ignore_label: int | None = None) -> None:
        if not case_names:
            raise ValueError("PatchSampler needs at least one case.")
        self.dataset = dataset
        self.case_names = list(case_names)
        self.patch_size = [int(p) for p in patch_size]
        self.final_patch_size = [int(p) for p in final_patch_size]
        self.need_to_pad = [p - f for p, f in zip(self.patch_size, self.final_patch_size)]
        self.batch_size = int(batch_size)
        self.oversample_foreground = float(oversample_foreground)
        self.ignore_label = ignore_label
        self._locations: dict[str, dict[str, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:  # worker processes rebuild the cache themselves
        return {**self.__dict__, "_locations": {}}

    def sample(self, rng: np.random.Generator, sample_index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """One patch: ``(data (C, *P) float32, seg (1, *P) int16, case name)`` for global sample ``sample_index``."""
        name = self.case_names[int(rng.integers(len(self.case_names)))]
        data, seg, properties = self.dataset.load_case(name)
        if seg is None:
            raise ValueError(f"Preprocessed case {name!r} has no segmentation; it cannot be used for training.")
        force = is_forced_foreground(sample_index, self.batch_size, self.oversample_foreground)
        voxels = self._foreground_class_voxels(rng, name, properties) if force else None
        voxel = voxels[int(rng.integers(len(voxels)))] if voxels is not None else None
        if len(self.patch_size) == 2:
            z = int(voxel[0]) if voxel is not None else int(rng.integers(data.shape[1]))
            data, seg = data[:, z], seg[:, z]
            if voxel is not None:  # nnU-Net's 2D loader: then a random voxel of that class in the chosen slice
                in_slice = voxels[voxels[:, 0] == z]
                voxel = in_slice[int(rng.integers(len(in_slice)))][1:]
        lower = self._lower_corner(rng, data.shape[1:], voxel)
        return (crop_padded(data, lower, self.patch_size, 0.0).astype(np.float32, copy=False),
                crop_padded(seg, lower, self.patch_size, -1).astype(np.int16, copy=False), name)

    # ----- helpers ---------------------------------------------------------------------------------------
    def _lower_corner(self, rng: np.random.Generator, shape: Sequence[int], voxel: np.ndarray | None) -> list[int]:
        lows, highs = box_bounds(shape, self.patch_size, self.need_to_pad)
        if voxel is None:
            return [int(rng.integers(lo, hi + 1)) for lo, hi in zip(lows, highs)]
        return [max(lo, int(v) - p // 2) for lo, v, p in zip(lows, voxel, self.patch_size)]

    def _foreground_class_voxels(self, rng: np.random.Generator, name: str, properties: dict[str, Any]
                                 ) -> np.ndarray | None:
        """The ``(N, 3)`` voxels of a random class present in the case, or None if there is none."""
        locations = self._class_locations(name, properties)
        present = [k for k, v in locations.items() if len(v) and k != str(self.ignore_label)]
        if not present:
            return None
        return locations[present[int(rng.integers(len(present)))]]

    def _class_locations(self, name: str, properties: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per class, ``(N, 3)`` voxel coordinates ``(z, y, x)`` (the stored channel index is dropped)."""
        if name not in self._locations:
            stored = properties.get("class_locations", {}) or {}
            self._locations[name] = {
                str(k): np.asarray(v, dtype=np.int64).reshape(-1, 4)[:, 1:] for k, v in stored.items()
            }
        return self._locations[name]
