"""Training and validation batches: sample patches, augment them, turn labels into loss targets.

Every sample is a pure function of ``(seed, stream, batch index, sample index)``: its random generator (and
the NumPy global state that batchgenerators draws from) is seeded from exactly these numbers. So a batch is
the same whether it is made in this process or in any background worker, resuming only needs the batch
counter, and a batch split over DDP ranks (each rank makes its rows of the global batch) is identical to the
batch a single process makes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from AutoSegNetLib.training.sampling import PatchSampler

if TYPE_CHECKING:
    from batchgenerators.transforms.abstract_transforms import Compose

    from AutoSegNetLib.training.cascade_augmentation import PreviousStageChannels

TRAIN_STREAM = 0
VAL_STREAM = 1


@dataclass
class Batch:
    """One batch as NumPy arrays.

    ``data``: ``(b, C, *P)`` float32. ``targets``: one array per deep-supervision output, highest resolution
    first: labels ``(b, 1, *P_i)`` int16 (ignore label kept, -1 turned into background), or for regions
    ``(b, R, *P_i)`` uint8 with one more last channel marking ignored voxels when there is an ignore label.
    """

    index: int
    data: np.ndarray
    targets: list[np.ndarray]
    cases: list[str]


@dataclass(frozen=True)
class TargetSpec:
    """How labels become loss targets.

    ``scales``: per network output, the integer downsampling factor per axis (``[[1, 1, 1]]`` without deep
    supervision). ``regions``: label values per region (sigmoid outputs), or None for softmax classes.
    ``mask_channels``: data channels normalised inside the non-zero mask only; they are zeroed outside it.
    """

    scales: tuple[tuple[int, ...], ...]
    regions: tuple[tuple[int, ...], ...] | None = None
    ignore_label: int | None = None
    mask_channels: tuple[int, ...] = ()


def deep_supervision_scales(strides: Sequence[Sequence[int]], deep_supervision: bool) -> tuple[tuple[int, ...], ...]:
    """Downsampling factor per output: cumulative products of the encoder strides, one per decoder stage."""
    factors = np.cumprod(np.asarray(strides, dtype=int), axis=0)[:-1]
    scales = tuple(tuple(int(f) for f in row) for row in factors)
    return scales if deep_supervision else scales[:1]


def make_targets(seg: np.ndarray, spec: TargetSpec) -> list[np.ndarray]:
    """Labels ``(b, 1, *P)`` (already without -1) -> one target per output, nearest-downsampled.

    Downsampling by ``k`` keeps voxels ``k // 2, k // 2 + k, ...`` (PyTorch's ``nearest-exact``, as nnU-Net).
    """
    if spec.regions is not None:
        channels = [np.isin(seg[:, 0], region) for region in spec.regions]
        if spec.ignore_label is not None:
            channels.append(seg[:, 0] == spec.ignore_label)
        target = np.stack(channels, axis=1).astype(np.uint8)
    else:
        target = seg.astype(np.int16, copy=False)
    out = []
    for scale in spec.scales:
        index = (slice(None), slice(None), *[slice(k // 2, None, k) for k in scale])
        out.append(np.ascontiguousarray(target[index]))
    return out


class BatchSource:
    """Makes batch ``i`` of a stream: rows ``sample_range`` of a global batch (all rows in one process).

    ``transforms`` is the augmentation (None for validation or when augmentation is off; then the sampler must
    cut patches at the network's patch size). ``previous_stage`` (a cascade stage) turns the sampler's second label
    channel, the low-resolution segmentation, into extra data channels after the augmentation, as nnU-Net's
    ``MoveSegAsOneHotToData``; it draws from its own generator, so the other streams stay as without it.
    """

    def __init__(self, sampler: PatchSampler, transforms: Compose | None, targets: TargetSpec, seed: int,
                 stream: int, sample_range: tuple[int, int] | None = None,
                 previous_stage: PreviousStageChannels | None = None) -> None:
        self.sampler = sampler
        self.transforms = transforms
        self.targets = targets
        self.seed = int(seed)
        self.stream = int(stream)
        self.sample_range = sample_range or (0, sampler.batch_size)
        self.previous_stage = previous_stage

    def batch(self, index: int) -> Batch:
        datas, segs, cases = [], [], []
        for sample_index in range(*self.sample_range):
            data, seg, case = self._sample(index, sample_index)
            datas.append(data)
            segs.append(seg)
            cases.append(case)
        data, seg = np.stack(datas), np.stack(segs)
        return Batch(index, data, make_targets(seg, self.targets), cases)

    def _sample(self, index: int, sample_index: int) -> tuple[np.ndarray, np.ndarray, str]:
        entropy = [self.seed, self.stream, int(index), int(sample_index)]
        rng = np.random.default_rng(np.random.SeedSequence([*entropy, 0]))
        global_seed = int(np.random.SeedSequence([*entropy, 1]).generate_state(1)[0])
        np.random.seed(global_seed)  # batchgenerators draws from NumPy's global generator
        random.seed(global_seed)
        data, seg, case = self.sampler.sample(rng, sample_index)
        if self.transforms is not None:
            out = self.transforms(data=data[None], seg=seg[None])
            data, seg = out["data"][0], out["seg"][0]
        seg = np.rint(seg).astype(np.int16) if seg.dtype.kind == "f" else seg
        for channel in self.targets.mask_channels:
            data[channel][seg[0] < 0] = 0
        seg[seg < 0] = 0
        if self.previous_stage is not None:
            rng = np.random.default_rng(np.random.SeedSequence([*entropy, 2]))
            data = np.concatenate([data.astype(np.float32, copy=False), self.previous_stage(seg[1], rng)])
            seg = seg[:1]
        return data.astype(np.float32, copy=False), seg, case
