"""ThreadJob: work on a thread behind the job interface; ``poll`` hands over progress and the end."""

from __future__ import annotations

import threading

from AutoSegNetLib.jobs.thread_job import ThreadJob


def test_progress_and_the_result_reach_the_polling_thread_in_order():
    seen, finished = [], []

    def work(report, cancelled):
        for index in range(3):
            report(index + 1, 3, f"item {index}")
        return "result"

    job = ThreadJob(work, "upload", "upload")
    job.on_event.append(lambda event: seen.append((event["current"], event["total"], event["message"])))
    job.on_finished.append(finished.append)
    state = job.wait(10, interval=0.01)
    assert (state.status, state.return_code, job.result, state.fraction) == ("finished", 0, "result", 1.0)
    assert seen == [(1, 3, "item 0"), (2, 3, "item 1"), (3, 3, "item 2")] and finished == [job]


def test_an_exception_fails_the_job_with_its_message_and_does_not_escape():
    def work(report, cancelled):
        raise OSError("the server went away")

    job = ThreadJob(work, "download")
    assert job.wait(10, interval=0.01).status == "failed"
    assert job.state.message == "the server went away" and job.log_tail() == "the server went away"


def test_stop_is_seen_by_the_work_between_items_and_ends_the_job_stopped():
    started, release = threading.Event(), threading.Event()

    def work(report, cancelled):
        started.set()
        release.wait(10)
        if cancelled():
            raise RuntimeError("stopped between cases")
        return "not reached"

    job = ThreadJob(work, "upload")
    started.wait(10)
    assert job.poll() == [] and job.running  # poll never waits on the work
    job.stop()
    release.set()
    assert job.wait(10, interval=0.01).status == "stopped" and job.result is None
