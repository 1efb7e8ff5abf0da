"""A job's progress events as server-sent events, numbered so that a client can resume after a disconnect.

Event ``n`` is the ``n``-th JSON event line the engine wrote to ``events.jsonl`` (1-based); each is sent as
``id: n`` / ``data: <json>``. A client that reconnects with ``Last-Event-ID: n`` (or ``?after=n``) gets the
events after ``n``. When the job has ended and every event was sent, a last ``event: end`` message carries the
job's status, and the stream closes. Comment lines every ``heartbeat_s`` keep proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from AutoSegNetLib.jobs.engine_job import EVENTS_FILE


def read_events(folder: Path, offset: int = 0) -> tuple[list[dict], int]:
    """The complete event lines of ``<folder>/events.jsonl`` from byte ``offset``; returns them and the offset
    after the last complete line (a line still being written is read next time)."""
    path = Path(folder) / EVENTS_FILE
    if not path.is_file():
        return [], offset
    with open(path, "rb") as stream:
        stream.seek(offset)
        data = stream.read()
    complete = data[: data.rfind(b"\n") + 1]
    events = []
    for line in complete.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a log line that reached stdout
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events, offset + len(complete)


def format_message(data: dict, event_id: int | None = None, name: str | None = None) -> str:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines += [f"event: {name}"] if name else []
    return "\n".join([*lines, f"data: {json.dumps(data, separators=(',', ':'))}"]) + "\n\n"


async def event_stream(folder: Path, after: int, finished: Callable[[], str | None],
                       interval_s: float = 0.1, heartbeat_s: float = 15.0) -> AsyncIterator[str]:
    """Server-sent events of the job in ``folder`` after event number ``after``; ``finished()`` returns the
    job's final status once it has ended (else None)."""
    number, offset, last_sent = 0, 0, time.monotonic()
    while True:
        status = finished()  # asked before reading, so that every event written before the end is sent
        events, offset = read_events(folder, offset)
        for event in events:
            number += 1
            if number > after:
                yield format_message(event, number)
                last_sent = time.monotonic()
        if status is not None:
            yield format_message({"status": status, "events": number}, name="end")
            return
        if time.monotonic() - last_sent > heartbeat_s:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(interval_s)
