"""Progress events: the one channel from the engine to any caller (terminal, Slicer, scripts).

Each event is a flat JSON object with ``"event"`` (``stage``, ``case``, ``epoch``, ``iteration``,
``checkpoint``, ``done``, ``error``, ...), a ``"time"`` (Unix seconds) and plain fields. With
``mode="json"`` every event is one line on the stream; a status file, when given, always holds the
latest event (written atomically) so another process can re-attach to a running job.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from AutoSegNetLib.progress_text import TextProgress
from AutoSegNetLib.utils.atomic import write_json

log = logging.getLogger(__name__)

MODES = ("none", "text", "json")


class ProgressReporter:
    """Emit progress events as JSON lines, log lines, or not at all, and keep a status file."""

    def __init__(self, mode: str = "none", stream: TextIO | None = None, status_file: Path | None = None,
                 text: TextProgress | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.stream = stream if stream is not None else sys.stdout
        self.status_file = Path(status_file) if status_file else None
        # text mode: bars on a terminal (stderr, beside the log), readable log lines elsewhere
        self.text = text if text is not None or mode != "text" else TextProgress(sys.stderr)

    def with_status_file(self, status_file: Path | None) -> ProgressReporter:
        """The same reporter (same bars) writing its latest event to ``status_file``."""
        return ProgressReporter(self.mode, self.stream, status_file, self.text)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Send one event; returns it (as written)."""
        record = {"event": event, "time": round(time.time(), 3), **fields}
        if self.mode == "json":
            self.stream.write(json.dumps(record, default=_plain) + "\n")
            self.stream.flush()
        elif self.text is not None:
            self.text.handle(record)
        if self.status_file is not None:
            try:
                write_json(self.status_file, record, durable=True)  # re-attaching reads it after a crash
            except OSError as exc:  # a full disk must not kill training over a status file
                log.warning("Could not write status file %s: %s", self.status_file, exc)
        return record


def read_status(status_file: Path) -> dict[str, Any] | None:
    """The latest event from a status file, or None if there is none (yet)."""
    try:
        return json.loads(Path(status_file).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
