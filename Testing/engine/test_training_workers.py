"""Background data workers: same batches as in-process, and a failing or killed worker stops training loudly."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from AutoSegNetLib.training.batches import BatchSource, TargetSpec
from AutoSegNetLib.training.loader import BatchLoader, DataWorkerError
from AutoSegNetLib.training.sampling import PatchSampler


class NoiseCases:
    """Random cases made on the fly (picklable, so spawned workers can use them too)."""

    def load_case(self, name):
        rng = np.random.default_rng(int(name))
        seg = (rng.random((1, 10, 12, 12)) > 0.7).astype(np.int16)
        locations = {"1": np.c_[np.zeros(int(seg.sum()), int), np.argwhere(seg[0] == 1)]}
        return rng.random((1, 10, 12, 12)).astype(np.float32), seg, {"class_locations": locations}


class BrokenCases(NoiseCases):
    def load_case(self, name):
        if name == "3":
            raise ValueError(f"case {name} has a broken file")
        return super().load_case(name)


class StuckCases(NoiseCases):
    def load_case(self, name):
        time.sleep(60)


def sources(cases=None):
    sampler = PatchSampler(cases or NoiseCases(), ["1", "2", "3"], [8, 8, 8], [8, 8, 8], 2, 0.5)
    return {"train": BatchSource(sampler, None, TargetSpec(scales=((1, 1, 1),)), seed=3, stream=0)}


def test_workers_deliver_the_same_batches_in_the_same_order_as_the_main_process():
    with BatchLoader(sources(), num_workers=0) as local, BatchLoader(sources(), num_workers=2) as pool:
        expected = [b.data for b in local.batches("train", range(5))]
        got = [b.data for b in pool.batches("train", range(5))]
        again = [b.data for b in pool.batches("train", range(5, 8))]
    assert len(got) == 5 and len(again) == 3
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


def test_an_error_inside_a_worker_stops_training_with_that_error():
    with BatchLoader(sources(BrokenCases()), num_workers=2) as pool, pytest.raises(
        DataWorkerError, match=r"ValueError: case 3 has a broken file"
    ):
        for _ in pool.batches("train", range(50)):
            pass


def test_a_killed_worker_stops_training_instead_of_hanging():
    pool = BatchLoader(sources(StuckCases()), num_workers=1)
    try:
        threading.Timer(0.5, os.kill, (pool.worker_pids[0], signal.SIGKILL)).start()
        started = time.monotonic()
        with pytest.raises(DataWorkerError, match="killed by signal SIGKILL"):
            next(iter(pool.batches("train", range(3))))
        assert time.monotonic() - started < 10
    finally:
        pool.close(grace_s=0.1)


def test_a_worker_that_stops_answering_is_reported_after_the_timeout():
    pool = BatchLoader(sources(StuckCases()), num_workers=1, timeout_s=0.6)
    try:
        with pytest.raises(DataWorkerError, match="produced no batch for 1 s"):
            next(iter(pool.batches("train", range(3))))
    finally:
        pool.close(grace_s=0.1)
        assert not pool._workers


def test_closing_the_loader_ends_its_workers():
    pool = BatchLoader(sources(), num_workers=2)
    processes = [w.process for w in pool._workers]
    next(iter(pool.batches("train", range(4))))  # abandon a partly consumed stream
    pool.close()
    assert not any(p.is_alive() for p in processes)


@pytest.mark.slow
def test_spawned_workers_work_where_fork_is_unavailable():
    with BatchLoader(sources(), num_workers=0) as local, BatchLoader(sources(), 2, start_method="spawn") as pool:
        for a, b in zip(local.batches("train", range(3)), pool.batches("train", range(3))):
            np.testing.assert_array_equal(a.data, b.data)
