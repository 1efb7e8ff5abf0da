"""What the server offers: engine version, devices and their free memory."""

from __future__ import annotations

import logging
import os

from AutoSegNetLib import __version__

log = logging.getLogger(__name__)
API_VERSION = 1


def devices() -> list[dict]:
    """One entry per CUDA device (name, total and free memory in MiB), else one ``cpu`` entry."""
    try:
        import torch
    except ImportError:
        return [{"name": "cpu", "type": "cpu", "cores": os.cpu_count()}]
    if not torch.cuda.is_available():
        return [{"name": "cpu", "type": "cpu", "cores": os.cpu_count()}]
    found = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        found.append({"name": torch.cuda.get_device_name(index), "type": "cuda", "index": index,
                      "total_mb": total // 2**20, "free_mb": free // 2**20})
    return found


def gpu_has_room(min_free_mb: int) -> bool:
    """True without CUDA (CPU jobs share the cores) or when some GPU has ``min_free_mb`` free."""
    cuda = [d for d in devices() if d["type"] == "cuda"]
    return not cuda or any(d["free_mb"] >= min_free_mb for d in cuda)


def server_info(queue_counts: dict[str, int]) -> dict:
    return {"engine_version": __version__, "api_version": API_VERSION, "devices": devices(),
            "cpu_count": os.cpu_count(), "queue": queue_counts}
