"""Multi-process training with DistributedDataParallel: settings, process group, batch split, spawning.

The CLI detects ``torchrun`` (environment ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` /
``MASTER_PORT``) or ``--num-gpus N`` and passes a :class:`DistributedSettings` down; library code never reads
the environment. NCCL on CUDA, gloo on CPU. Rank 0 alone writes checkpoints, logs and progress events.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistributedSettings:
    """One process of a DDP job. ``init_method`` is a ``tcp://host:port`` or ``env://`` URL."""

    rank: int
    world_size: int
    local_rank: int = 0
    init_method: str = "env://"
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DistributedSettings | None:
        """Settings from torchrun's variables, or None when not started by torchrun (CLI layer only)."""
        world = int(environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1 or "RANK" not in environ:
            return None
        return cls(rank=int(environ["RANK"]), world_size=world, local_rank=int(environ.get("LOCAL_RANK", "0")))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def init_process_group(settings: DistributedSettings, device: torch.device) -> None:
    """Join the process group (NCCL for CUDA devices, gloo otherwise)."""
    if dist.is_initialized():
        return
    backend = settings.backend or ("nccl" if device.type == "cuda" else "gloo")
    dist.init_process_group(backend, init_method=settings.init_method, rank=settings.rank,
                            world_size=settings.world_size)


def shutdown_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_network(network: nn.Module, runtime: Any, distributed: DistributedSettings | None,
                 compile: bool = False) -> nn.Module:
    """DDP (synchronised batch norm on CUDA, should a network use it) and optional ``torch.compile``."""
    if distributed is not None and distributed.world_size > 1:
        if runtime.device.type == "cuda":
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        network = nn.parallel.DistributedDataParallel(network, device_ids=device_ids)
    if compile:
        network = torch.compile(network)
    return network


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def batch_rows(global_batch_size: int, world_size: int, rank: int) -> tuple[int, int]:
    """Rows ``[low, high)`` of the global batch that ``rank`` makes; the first ``B % W`` ranks take one more
    (nnU-Net's split). Raises if a rank would get no sample."""
    if global_batch_size < world_size:
        raise ValueError(f"Batch size {global_batch_size} is smaller than the number of processes {world_size}.")
    sizes = [global_batch_size // world_size + (1 if r < global_batch_size % world_size else 0)
             for r in range(world_size)]
    low = sum(sizes[:rank])
    return low, low + sizes[rank]


def sum_over_ranks(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The sum of a CPU float64 tensor over all ranks, returned on the CPU (moved to ``device`` for NCCL)."""
    if not is_distributed():
        return values
    reduced = values.to(device)
    dist.all_reduce(reduced)
    return reduced.cpu()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is set on any rank (every rank must call this at the same point)."""
    if not is_distributed():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def broadcast_value(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_values(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (on every rank)."""
    if not is_distributed():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def spawn(fn: Callable[..., Any], world_size: int, args: tuple = ()) -> None:
    """Run ``fn(settings, *args)`` in ``world_size`` new processes on this machine (``--num-gpus``).

    ``fn`` must be a module-level function. Raises if any process fails.
    """
    import torch.multiprocessing as mp

    init_method = f"tcp://127.0.0.1:{free_port()}"
    mp.spawn(_spawned, args=(fn, world_size, init_method, args), nprocs=world_size, join=True)


def _spawned(rank: int, fn: Callable[..., Any], world_size: int, init_method: str, args: tuple) -> None:
    fn(DistributedSettings(rank=rank, world_size=world_size, local_rank=rank, init_method=init_method), *args)
