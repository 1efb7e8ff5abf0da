"""The cascade's extra input channels in a training sample: one-hot of the low-resolution segmentation, and
nnU-Net's augmentations of them, which teach the full-resolution stage not to trust the lowres result blindly.

nnU-Net (``MoveSegAsOneHotToData``, ``ApplyRandomBinaryOperatorTransform``,
``RemoveRandomConnectedComponentFromOneHotEncodingTransform``), with its settings:

- per sample with p 0.4, every channel in random order: dilation, erosion, closing or opening (chosen uniformly)
  with a ball of radius uniform in [1, 8) voxels; voxels a channel gained are removed from the other channels;
- per sample with p 0.2, every channel: one random connected component (26-connected in 3D) smaller than 15 % of
  the patch is removed (left as background).

Here the morphology uses the Euclidean distance transform (a voxel is within the ball of radius ``r`` of another
when their distance is ``<= r``), which equals the binary operator with that ball but costs the same for every
radius; the image border counts as inside for erosion and as outside for dilation, as in scipy and skimage.
Each transform draws its parameters from the generator it is given (``get_parameters``) before applying them
(``apply``), so a sample stays a pure function of its seed. See docs/decisions/0015-cascade.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from AutoSegNetLib.training.cascade import previous_stage_channels

OPERATIONS = ("dilation", "erosion", "closing", "opening")


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary dilation of ``mask`` ``(*S)`` bool with a ball of ``radius`` voxels."""
    return _on_box(mask, radius, lambda m: ndimage.distance_transform_edt(~m) <= radius)


def erode(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary erosion of ``mask`` ``(*S)`` bool with a ball of ``radius`` voxels (outside the array counts as in)."""
    return _on_box(mask, radius, lambda m: ndimage.distance_transform_edt(m) > radius)


def morphology(mask: np.ndarray, operation: str, radius: float) -> np.ndarray:
    """One of :data:`OPERATIONS` on ``mask`` ``(*S)`` bool with a ball of ``radius`` voxels."""
    if operation == "dilation":
        return dilate(mask, radius)
    if operation == "erosion":
        return erode(mask, radius)
    if operation == "closing":
        return erode(dilate(mask, radius), radius)
    if operation == "opening":
        return dilate(erode(mask, radius), radius)
    raise ValueError(f"Unknown operation {operation!r}; use one of {', '.join(OPERATIONS)}.")


def _on_box(mask: np.ndarray, radius: float, operation: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``operation`` to the part of ``mask`` within ``radius`` + 1 voxels of its True voxels (nothing
    changes farther away); an empty or full mask is returned as it is."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or mask.all():
        return mask.copy()
    margin = int(np.ceil(radius)) + 1
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(0, int(hits[0]) - margin), min(mask.shape[axis], int(hits[-1]) + 1 + margin)))
    out = np.zeros_like(mask)
    out[tuple(box)] = operation(mask[tuple(box)])
    return out


@dataclass(frozen=True)
class RandomBinaryOperator:
    """Per sample with ``p_per_sample``: each channel (in random order, with ``p_per_label``) gets a random
    operation of :data:`OPERATIONS` with a ball of radius uniform in ``radius`` (voxels)."""

    p_per_sample: float = 0.4
    radius: tuple[float, float] = (1.0, 8.0)
    p_per_label: float = 1.0

    def get_parameters(self, rng: np.random.Generator, num_channels: int) -> list[tuple[int, str, float]]:
        """``[(channel, operation, radius), ...]`` in the order to apply; empty when the sample is left alone."""
        if rng.uniform() >= self.p_per_sample:
            return []
        steps = []
        for channel in rng.permutation(num_channels):
            if rng.uniform() < self.p_per_label:
                steps.append((int(channel), OPERATIONS[int(rng.integers(len(OPERATIONS)))],
                              float(rng.uniform(*self.radius))))
        return steps

    def apply(self, channels: np.ndarray, steps: list[tuple[int, str, float]]) -> np.ndarray:
        """``channels`` ``(K, *S)`` one-hot (changed in place and returned)."""
        for channel, operation, radius in steps:
            mask = channels[channel] > 0
            if not mask.any():
                continue
            result = morphology(mask, operation, radius)
            gained = result & ~mask
            channels[channel] = result
            for other in range(channels.shape[0]):  # keep it one-hot: a gained voxel leaves the other classes
                if other != channel:
                    channels[other][gained] = 0
        return channels


@dataclass(frozen=True)
class RemoveRandomComponent:
    """Per sample with ``p_per_sample``: in each channel (with ``p_per_label``) one random connected component
    smaller than ``max_fraction`` of the patch's voxels is set to background."""

    p_per_sample: float = 0.2
    max_fraction: float = 0.15
    p_per_label: float = 1.0

    def get_parameters(self, rng: np.random.Generator, num_channels: int) -> list[tuple[int, float]]:
        """``[(channel, u), ...]``: ``u`` in [0, 1) picks the component among the eligible ones when applied."""
        if rng.uniform() >= self.p_per_sample:
            return []
        return [(c, float(rng.uniform())) for c in range(num_channels) if rng.uniform() < self.p_per_label]

    def apply(self, channels: np.ndarray, steps: list[tuple[int, float]]) -> np.ndarray:
        """``channels`` ``(K, *S)`` one-hot (changed in place and returned)."""
        for channel, u in steps:
            mask = channels[channel] > 0
            if not mask.any():
                continue
            labelled, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
            sizes = np.bincount(labelled.ravel(), minlength=count + 1)[1:]
            eligible = np.flatnonzero(sizes < mask.size * self.max_fraction) + 1
            if eligible.size:
                channels[channel][labelled == eligible[int(u * eligible.size)]] = 0
        return channels


@dataclass(frozen=True)
class PreviousStageChannels:
    """Turns a sample's low-resolution segmentation ``(*P)`` into its extra input channels ``(K, *P)`` float32:
    one-hot of ``label_values``, then (when ``augment``) the random binary operator and component removal."""

    label_values: tuple[int, ...]
    augment: bool = False
    binary_operator: RandomBinaryOperator = RandomBinaryOperator()
    remove_component: RemoveRandomComponent = RemoveRandomComponent()

    def __call__(self, segmentation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        channels = previous_stage_channels(segmentation, self.label_values)
        if not self.augment:
            return channels
        channels = self.binary_operator.apply(channels, self.binary_operator.get_parameters(rng, len(channels)))
        return self.remove_component.apply(channels, self.remove_component.get_parameters(rng, len(channels)))
