"""A job on an AutoSegNet server behind the interface of a local :class:`~AutoSegNetLib.jobs.engine_job.EngineJob`.

``poll``, ``stop``, ``kill``, ``wait``, ``running``, ``state``, ``on_event``, ``on_finished``, ``meta``,
``kind``, ``log_tail``, ``detach`` -- so the module's workflow and job chains do not know where a job runs.
A thread submits the job, follows its event stream (reconnecting after a break and resuming from the last event
number it saw) and hands events to :meth:`RemoteJob.poll` through a queue: ``poll`` never waits on the network.
``remote.json`` in the local job folder records the server's job ID, so that :meth:`RemoteJob.reattach` can
follow the job again after Slicer restarted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from AutoSegNetLib.jobs.followed import InboxJob
from AutoSegNetLib.jobs.state import FAILED
from AutoSegNetLib.remote.connection import Connection, RemoteError
from AutoSegNetLib.utils.atomic import write_json

log = logging.getLogger(__name__)
REMOTE_FILE = "remote.json"
RETRY_S = (0.5, 1.0, 2.0, 5.0)  # waits between reconnections, the last repeated
GIVE_UP_S = 600.0  # a server unreachable this long fails the job (it may still run there: reattach later)


class RemoteJob(InboxJob):
    """One server job, followed from this process."""

    def __init__(self, connection: Connection, folder: Path, record: dict) -> None:
        super().__init__()
        self.connection, self.folder, self.record = connection, Path(folder), record
        self.events_seen = 0
        self._tail = ""
        self._thread: threading.Thread | None = None

    @classmethod
    def submit(cls, connection: Connection, command: str, args: Sequence[str], folder: Path, kind: str = "",
               label: str = "", meta: dict | None = None) -> RemoteJob:
        """Ask the server to run ``autosegnet <command> <args>`` (paths relative to the client's workspace there);
        returns at once, the request is sent by the job's thread."""
        record = {"command": command, "args": list(map(str, args)), "kind": kind or command, "label": label,
                  "meta": meta or {}, "server": connection.url, "id": None}
        job = cls(connection, folder, record)
        job._follow()
        return job

    @classmethod
    def reattach(cls, connection: Connection, folder: Path) -> RemoteJob:
        """Follow the server job recorded in ``<folder>/remote.json`` again (from its first event)."""
        record = json.loads((Path(folder) / REMOTE_FILE).read_text())
        job = cls(connection, folder, record)
        job._follow()
        return job

    # ----- the interface of EngineJob -------------------------------------------------------------------------
    @property
    def id(self) -> str | None:
        return self.record.get("id")

    def stop(self, grace_s: float = 120.0) -> None:
        """Ask the server to stop the job cleanly; returns at once."""
        self.record["stop_requested"] = True
        if self.id is not None and not self._done:
            threading.Thread(target=self._request_stop, daemon=True).start()

    def kill(self) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self._tail.splitlines()[-lines:])

    # ----- the thread ---------------------------------------------------------------------------------------
    def _follow(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"remote-{self.kind}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            if self.id is None:
                self._submit()
            status = self._stream()
            message = ""
            if status == FAILED:
                self._tail = self.connection.text("GET", f"/v1/jobs/{self.id}/log?lines=50")
                message = self.connection.json("GET", f"/v1/jobs/{self.id}").get("message") or ""
            self.inbox.put(("end", (status, message)))
        except Exception as exc:  # reported through the job's state, never raised in the GUI thread
            self.inbox.put(("end", (FAILED, str(exc))))

    def _submit(self) -> None:
        body = {k: self.record[k] for k in ("command", "args", "kind", "label", "meta")}
        self.record["id"] = self.connection.json("POST", "/v1/jobs", body)["id"]
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / REMOTE_FILE, self.record)
        if self.record.get("stop_requested"):
            self._request_stop()

    def _stream(self) -> str:
        """Follow the events to the end; returns the final status. Reconnects after breaks."""
        failures, broken_since = 0, None
        while True:
            try:
                for number, name, data in self.connection.events(self.id, self.events_seen):
                    failures, broken_since = 0, None
                    if name == "end":
                        return str(data.get("status") or FAILED)
                    self.events_seen = number or self.events_seen + 1
                    self.inbox.put(("event", data))
            except (RemoteError, OSError, ValueError) as exc:
                if getattr(exc, "status", 0) in (401, 403, 404):
                    raise
                broken_since = broken_since or time.monotonic()
                if time.monotonic() - broken_since > GIVE_UP_S:
                    raise RemoteError(f"Lost the server for {GIVE_UP_S:.0f} s ({exc}); the job may still run there: "
                                      "re-attach once it is back.") from exc
                time.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                failures += 1
                log.info("Event stream of job %s broke (%s); resuming after event %d.", self.id, exc,
                         self.events_seen)

    def _request_stop(self) -> None:
        try:
            self.connection.json("POST", f"/v1/jobs/{self.id}/stop")
        except RemoteError as exc:
            log.warning("Could not ask the server to stop job %s: %s", self.id, exc)
