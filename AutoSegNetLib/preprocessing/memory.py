"""Bounded memory: estimate what one case needs and refuse it clearly when RAM cannot hold it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psutil

from AutoSegNetLib.errors import AutoSegNetError

# working copies while cropping, normalising and resampling one channel (spline prefilter in float64)
_IMAGE_FACTOR = 2.0
_PER_CHANNEL_WORK = 3.0


def estimate_case_bytes(shape: Sequence[int], new_shape: Sequence[int], channels: int, has_seg: bool) -> int:
    """Peak bytes to preprocess one case of ``channels`` x ``shape`` voxels resampled to ``new_shape``.

    Counts the float32 image and its crop, the resampled output, one channel's float64 spline coefficients
    and, with a label map, the one-hot working arrays of the output.
    """
    n_in, n_out = int(np.prod(shape)), int(np.prod(new_shape))
    total = channels * n_in * 4 * _IMAGE_FACTOR + channels * n_out * 4
    total += max(n_in, n_out) * 4 * _PER_CHANNEL_WORK
    if has_seg:
        total += n_in * (2 + 8) + n_out * (4 + 2 + 4 + 1)
    return int(total)


def check_memory(needed_bytes: int, what: str, available_bytes: int | None = None) -> None:
    """Raise a clear error when ``needed_bytes`` exceed the RAM available now."""
    available = psutil.virtual_memory().available if available_bytes is None else available_bytes
    if needed_bytes > available:
        raise AutoSegNetError(
            f"{what} needs about {needed_bytes / 2**30:.1f} GiB of memory but only {available / 2**30:.1f} GiB "
            "are available. Use fewer workers (-np 1), close other programs, or run on a machine with more RAM."
        )
