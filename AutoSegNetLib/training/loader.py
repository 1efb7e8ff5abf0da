"""Deliver batches in order, made in this process or by background worker processes that fail loudly.

With ``num_workers == 0`` batches are made in the calling process (the tested default on small CPUs). With
workers, each worker owns a task pipe and a result pipe; tasks are dealt round-robin and results read back
in the same order. The main process never blocks blindly on a worker: it polls, and if the worker has
exited it raises :class:`DataWorkerError` with the exit code or signal (e.g. killed for memory); an exception
inside a worker comes back with the worker's traceback; a worker that is alive but silent for
``timeout_s`` is reported too. Workers ignore SIGINT/SIGTERM (the training process decides when to stop)
and exit on their own when the training process goes away.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.training.batches import Batch, BatchSource

log = logging.getLogger(__name__)
POLL_S = 0.2


class DataWorkerError(AutoSegNetError):
    """A data worker process raised an error, died, or stopped answering; training stops with this error."""


def default_start_method() -> str:
    """``fork`` on Linux (fast, workers only run NumPy/SciPy code), ``spawn`` elsewhere."""
    return "fork" if sys.platform.startswith("linux") else "spawn"


class BatchLoader:
    """Batches of named :class:`BatchSource` streams (``"train"``, ``"val"``), in the order asked for."""

    def __init__(self, sources: dict[str, BatchSource], num_workers: int = 0, start_method: str = "auto",
                 timeout_s: float = 600.0, prefetch: int = 2) -> None:
        self.sources = sources
        self.num_workers = int(num_workers)
        self.timeout_s = float(timeout_s)
        self.prefetch = max(1, int(prefetch))
        self._workers: list[_Worker] = []
        if self.num_workers > 0:
            method = default_start_method() if start_method == "auto" else start_method
            context = multiprocessing.get_context(method)
            self._workers = [_Worker.start(context, k, sources) for k in range(self.num_workers)]
        self._next_worker = 0

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    def batches(self, stream: str, indices: Sequence[int]) -> Iterator[Batch]:
        """Yield ``sources[stream].batch(i)`` for each ``i`` in ``indices``, in order."""
        if stream not in self.sources:
            raise KeyError(f"unknown batch stream {stream!r}; known: {sorted(self.sources)}")
        if not self._workers:
            for index in indices:
                yield self.sources[stream].batch(index)
            return
        in_flight: collections.deque[tuple[_Worker, tuple[str, int]]] = collections.deque()
        pending = iter(indices)
        limit = self.prefetch * len(self._workers)
        for _ in range(limit):
            if not self._submit(stream, pending, in_flight):
                break
        while in_flight:
            worker, tag = in_flight.popleft()
            batch = worker.receive(tag, self.timeout_s)
            self._submit(stream, pending, in_flight)
            yield batch

    def _submit(self, stream: str, pending: Iterator[int], in_flight: collections.deque) -> bool:
        index = next(pending, None)
        if index is None:
            return False
        worker = self._workers[self._next_worker]
        self._next_worker = (self._next_worker + 1) % len(self._workers)
        tag = (stream, int(index))
        worker.send(tag)
        in_flight.append((worker, tag))
        return True

    def close(self, grace_s: float = 2.0) -> None:
        """Stop the workers (idempotent): ask each to exit, wait up to ``grace_s`` in all, then kill the rest
        (they ignore SIGTERM, so a stuck one is killed outright)."""
        for worker in self._workers:
            worker.request_stop()
        deadline = time.monotonic() + grace_s
        for worker in self._workers:
            worker.finish(max(0.0, deadline - time.monotonic()))
        self._workers = []


class _Worker:
    """One worker process with its task and result pipes (main-side ends)."""

    def __init__(self, worker_id: int, process: Any, tasks: Any, results: Any) -> None:
        self.worker_id = worker_id
        self.process = process
        self.tasks = tasks
        self.results = results

    @classmethod
    def start(cls, context: Any, worker_id: int, sources: dict[str, BatchSource]) -> _Worker:
        task_read, task_write = context.Pipe(duplex=False)
        result_read, result_write = context.Pipe(duplex=False)
        process = context.Process(target=_worker_main, args=(worker_id, sources, task_read, result_write, os.getpid()),
                                  name=f"autosegnet-data-{worker_id}", daemon=True)
        process.start()
        # Close the child's ends here, before the next worker is forked, so that when this worker dies no
        # other process holds its result pipe open and a half-written result reads as EOF instead of hanging.
        task_read.close()
        result_write.close()
        return cls(worker_id, process, task_write, result_read)

    def send(self, tag: tuple[str, int]) -> None:
        try:
            self.tasks.send(tag)
        except (BrokenPipeError, OSError):
            raise self._died() from None

    def receive(self, tag: tuple[str, int], timeout_s: float) -> Batch:
        """The result for ``tag`` (older results of abandoned requests are skipped)."""
        waited = 0.0
        while True:
            if self.results.poll(POLL_S):
                try:
                    kind, got, payload = self.results.recv()
                except (EOFError, OSError):
                    raise self._died() from None
                if kind == "error":
                    raise DataWorkerError(
                        f"Data worker {self.worker_id} failed while making {got[0]} batch {got[1]}: {payload}"
                    )
                if got == tag:
                    return payload
                continue
            if not self.process.is_alive() and not self.results.poll(0):
                raise self._died()
            waited += POLL_S
            if waited >= timeout_s:
                raise DataWorkerError(
                    f"Data worker {self.worker_id} (pid {self.process.pid}) produced no batch for {timeout_s:.0f} s "
                    "although it is still running; stopping instead of waiting forever. Try fewer workers "
                    "(--num-workers) or raise worker_timeout_s."
                )

    def _died(self) -> DataWorkerError:
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        return DataWorkerError(
            f"Data worker {self.worker_id} (pid {self.process.pid}) {how} while training waited for a batch "
            "(often the system killing it for lack of memory). Use fewer workers (--num-workers) or free memory, "
            "then resume with --continue."
        )

    def request_stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.tasks.send(None)

    def finish(self, timeout_s: float) -> None:
        self.process.join(timeout=timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5.0)
        for conn in (self.tasks, self.results):
            conn.close()


def _worker_main(worker_id: int, sources: dict[str, BatchSource], tasks: Any, results: Any, parent_pid: int) -> None:
    """Serve batch requests until told to stop or the training process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        if not tasks.poll(1.0):
            if os.getppid() != parent_pid:
                return
            continue
        try:
            tag = tasks.recv()
        except (EOFError, OSError):
            return
        if tag is None:
            return
        started = time.perf_counter()
        try:
            batch = sources[tag[0]].batch(tag[1])
        except Exception as exc:
            _send_quietly(results, ("error", tag, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
            return
        log.debug("worker %d made %s batch %d in %.3f s", worker_id, tag[0], tag[1], time.perf_counter() - started)
        if not _send_quietly(results, ("batch", tag, batch)):
            return


def _send_quietly(conn: Any, message: tuple) -> bool:
    """Send, returning False when the training process has closed the pipe."""
    try:
        conn.send(message)
    except (BrokenPipeError, OSError):
        return False
    return True
