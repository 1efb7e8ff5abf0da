"""Blending tiles into a whole image: the padded image, its tile positions and the running weighted sums.

:class:`TileBlend` holds one attempt of :func:`~AutoSegNetLib.inference.sliding_window.sliding_window_predict`:
it pads the image to at least the tile, lists the tiles (:func:`window_starts`), hands them out in batches and adds
the members' averaged outputs back in, weighted by :func:`tile_weights` (the Gaussian importance map of
:mod:`AutoSegNetLib.inference.tiles`, or ones), then divides by the summed weights and cuts the padding off.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from AutoSegNetLib.inference.tiles import compute_steps, gaussian_importance_map, padding_for

if TYPE_CHECKING:
    from AutoSegNetLib.inference.sliding_window import SlidingWindowSettings


@dataclass
class TileBlend:
    """The padded image ``(C, *P)`` of one attempt, its tiles, and the running sums: class values ``(K, *P)``,
    weights ``(*P)`` (none for a single tile, which is copied unweighted) and members' entropies ``(*P)`` (when
    asked for). Everything lives on the attempt's results device."""

    data: torch.Tensor
    pads: list[tuple[int, int]]
    window: tuple[int, ...]
    slice_mode: bool
    starts: list[tuple[int, ...]]
    weights: torch.Tensor
    weight_sum: torch.Tensor | None
    entropy_sum: torch.Tensor | None
    values: torch.Tensor | None = None

    @classmethod
    def start(cls, image: torch.Tensor, settings: SlidingWindowSettings, results_device: torch.device,
              with_member_entropy: bool) -> TileBlend:
        window = settings.window
        pads = padding_for(image.shape[1:], window)
        data = _pad(image.to(results_device, torch.float32), pads)
        size = tuple(data.shape[1:])
        starts = window_starts(size, window, settings.step, settings.slice_mode)
        weights = tile_weights(window, settings.gaussian).to(results_device)
        zeros = functools.partial(torch.zeros, size, dtype=torch.float32, device=results_device)
        return cls(data, pads, window, settings.slice_mode, starts, weights,
                   None if len(starts) == 1 else zeros(), zeros() if with_member_entropy else None)

    def batches(self, tile_batch: int) -> Iterator[list[tuple[slice, ...]]]:
        """The tiles' boxes, ``tile_batch`` at a time."""
        for first in range(0, len(self.starts), tile_batch):
            yield [_box(start, self.window) for start in self.starts[first : first + tile_batch]]

    def tiles(self, boxes: list[tuple[slice, ...]], device: torch.device) -> torch.Tensor:
        """The tiles at ``boxes`` on ``device``: ``(B, C, *W)``, or ``(B, C, Y, X)`` in slice mode."""
        tiles = torch.stack([self.data[(slice(None), *box)] for box in boxes]).to(device, non_blocking=True)
        return tiles[:, :, 0] if self.slice_mode else tiles

    def add(self, boxes: list[tuple[slice, ...]], values: torch.Tensor, member_entropy: torch.Tensor | None) -> None:
        """Blend the tiles' values ``(B, K, *W)`` (and members' entropies ``(B, *W)``) in at ``boxes``."""
        if self.slice_mode:
            values = values.unsqueeze(2)
            member_entropy = member_entropy.unsqueeze(1) if member_entropy is not None else None
        values = values.to(self.data.device, torch.float32)
        if self.values is None:
            self.values = torch.zeros((values.shape[1], *self.data.shape[1:]), dtype=torch.float32,
                                      device=values.device)
        single = self.weight_sum is None
        for b, box in enumerate(boxes):
            _blend(self.values, self.weight_sum, values[b], box, self.weights, single)
            if self.entropy_sum is not None:
                _blend(self.entropy_sum, None, member_entropy[b].to(self.entropy_sum.device, torch.float32), box,
                       self.weights, single)

    def normalise(self) -> None:
        """Divide the sums by the summed weights."""
        if self.weight_sum is not None:
            self.values /= self.weight_sum
            if self.entropy_sum is not None:
                self.entropy_sum /= self.weight_sum

    def result(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The values ``(K, Z, Y, X)`` (and entropies ``(Z, Y, X)``) with the padding cut off."""
        size = self.data.shape[1:]
        crop = tuple(slice(before, length - after) for (before, after), length in zip(self.pads, size))
        result = self.values[(slice(None), *crop)]
        return (result, self.entropy_sum[crop]) if self.entropy_sum is not None else result



def tile_weights(window: Sequence[int], gaussian: bool = True) -> torch.Tensor:
    """Blending weights of one tile ``window`` (float32): the Gaussian importance map, or ones."""
    if gaussian:
        return torch.from_numpy(gaussian_importance_map(window))
    return torch.ones(tuple(window), dtype=torch.float32)


def window_starts(
    padded_size: Sequence[int], window: Sequence[int], step: float, slice_mode: bool
) -> list[tuple[int, ...]]:
    """Start corners of all tiles, first axis outermost; in ``slice_mode`` every slice along the first axis."""
    if slice_mode:
        in_plane = compute_steps(padded_size[1:], window[1:], step)
        steps = [list(range(padded_size[0])), *in_plane]
    else:
        steps = compute_steps(padded_size, window, step)
    starts: list[tuple[int, ...]] = [()]
    for axis_steps in steps:
        starts = [(*s, t) for s in starts for t in axis_steps]
    return starts



def _box(start: Sequence[int], window: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(s, s + w) for s, w in zip(start, window))


def _blend(
    accumulator: torch.Tensor,
    weight_sum: torch.Tensor | None,
    values: torch.Tensor,
    box: tuple[slice, ...],
    weights: torch.Tensor,
    single: bool,
) -> None:
    """Add ``values`` (``(K, *W)`` or ``(*W)``) weighted by ``weights`` into ``accumulator[..., box]``; a single
    tile is copied unweighted."""
    index = box if values.ndim == len(box) else (slice(None), *box)
    if single:
        accumulator[index] = values
        return
    accumulator[index] += values * weights
    if weight_sum is not None:
        weight_sum[box] += weights


def _pad(image: torch.Tensor, pads: Sequence[tuple[int, int]]) -> torch.Tensor:
    if not any(before or after for before, after in pads):
        return image
    flat = [amount for before_after in reversed(pads) for amount in before_after]
    return torch.nn.functional.pad(image, flat, mode="constant", value=0.0)

