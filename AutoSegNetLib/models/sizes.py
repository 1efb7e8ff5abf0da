"""Sizes in bytes as people write them (``8GB``, ``500 MB``, ``2GiB``) and the default cap on a model zip.

Kept apart from :mod:`AutoSegNetLib.models.install` so that reading the model catalogue and downloading need
no PyTorch.
"""

from __future__ import annotations

import re

from AutoSegNetLib.errors import AutoSegNetError

#: Default cap on the unpacked size of a model zip (``--max-size``). Exported checkpoints hold fp32 weights only:
#: a default nnU-Net 3D U-Net is ~120 MB per fold, a ResEnc-L ~400 MB, so 5 folds are 0.6-2 GB and a cascade
#: (3d_lowres + 3d_cascade_fullres) of ResEnc-L ~4 GB. 16 GB leaves 4x headroom over that and still stops a bomb
#: long before it fills a typical disk (the free space is checked too).
DEFAULT_MAX_SIZE = 16 * 10**9
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """Bytes in a size such as ``8GB``, ``500 MB``, ``1.5GiB`` or ``1000`` (decimal kB/MB/GB/TB, binary
    KiB/MiB/GiB/TiB, case-insensitive)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise AutoSegNetError(
            f"--max-size {text!r} is not a size; give a number and a unit, e.g. 8GB, 500MB or 2GiB."
        )
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: int) -> str:
    """``size`` bytes in decimal units, as :func:`parse_size` reads them (``1kB``, ``12.3kB``, ``16GB``)."""
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= factor:
            return f"{size / factor:.3g}{unit}"
    return f"{size}B"
