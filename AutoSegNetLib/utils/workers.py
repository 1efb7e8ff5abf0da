"""Run one function over many items in worker processes, failing loudly when a worker dies.

``num_workers`` is honoured exactly (0 or 1 = in this process). A worker that raises propagates its
error (with the item it was working on); a worker process that is killed (out of memory, segfault)
fails the whole run with a clear message instead of hanging, because ``ProcessPoolExecutor`` marks the
pool as broken. With a :class:`~AutoSegNetLib.utils.stop.StopRequest`, no new item is started once a stop is
requested: the items in flight finish and are yielded, the rest are skipped (the caller sees fewer results).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.utils.stop import StopRequest, is_stopped

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class WorkerError(AutoSegNetError):
    """A worker failed on an item; the message names the item and the worker's error."""


def run_parallel(fn: Callable[[T], R], items: Iterable[T], num_workers: int,
                 describe: Callable[[T], str] = str, stop: StopRequest | None = None) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` as results complete, using ``num_workers`` processes.

    At most ``num_workers`` items are in flight at once, so memory stays bounded by one item per worker.
    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one). Once ``stop`` is
    requested no further item is started; those already started are finished and yielded.
    """
    items = list(items)
    if num_workers <= 1 or len(items) <= 1:
        for item in items:
            if is_stopped(stop):
                return
            yield item, _call(fn, item, describe)
        return
    context = multiprocessing.get_context(_start_method())
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=context) as pool:
        pending: dict[Any, T] = {}
        queue = iter(items)
        try:
            for item in queue:
                if is_stopped(stop):
                    break
                pending[pool.submit(fn, item)] = item
                if len(pending) >= num_workers:
                    yield from _drain(pending, describe, return_when=FIRST_COMPLETED)
            while pending:
                yield from _drain(pending, describe, return_when=FIRST_COMPLETED)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _drain(pending: dict, describe: Callable, return_when: str) -> Iterator[tuple[Any, Any]]:
    done, _ = wait(list(pending), return_when=return_when)
    for future in done:
        item = pending.pop(future)
        try:
            yield item, future.result()
        except BrokenProcessPool:
            raise WorkerError(
                f"A worker process died while working on {describe(item)} (killed by the system, often out of "
                "memory). Use fewer workers (-np) or free memory, then run again."
            ) from None
        except AutoSegNetError:
            raise
        except Exception as exc:
            raise WorkerError(f"Worker failed on {describe(item)}: {type(exc).__name__}: {exc}") from exc


def _call(fn: Callable[[T], R], item: T, describe: Callable[[T], str]) -> R:
    try:
        return fn(item)
    except AutoSegNetError:
        raise
    except Exception as exc:
        raise WorkerError(f"Failed on {describe(item)}: {type(exc).__name__}: {exc}") from exc


def _start_method() -> str:
    """``fork`` (fast: workers inherit the imported modules) unless CUDA is initialised in this process.

    Forking after CUDA was initialised breaks CUDA in the children; that is the one case where the slower
    ``spawn`` is needed (PyTorch's own DataLoader follows the same rule).
    """
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "spawn"
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
