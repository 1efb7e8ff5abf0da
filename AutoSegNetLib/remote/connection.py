"""HTTP calls to an AutoSegNet server: bearer token, JSON errors, streamed uploads/downloads, SSE events.

Blocking calls with a timeout: use them from a background thread (:class:`~.remote_job.RemoteJob` does), never
from Slicer's GUI thread -- except :meth:`Connection.info` behind an explicit "Test connection" click.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.utils.atomic import atomic_path

CHUNK = 1 << 20
CHECKSUM_HEADER = "X-Content-SHA256"


class RemoteError(AutoSegNetError):
    """The server refused a request or could not be reached; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Connection:
    """``url``: e.g. ``https://gpu-server:8765``; ``token``: the bearer token ('' for a local open server);
    ``cafile``: a CA bundle for a self-signed certificate."""

    url: str
    token: str = ""
    timeout_s: float = 30.0
    cafile: str | None = None

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RemoteError(f"{self.url!r} is not a server address; write it as http(s)://host:port.")
        object.__setattr__(self, "url", self.url.rstrip("/"))

    # ----- calls ---------------------------------------------------------------------------------------------
    def info(self) -> dict:
        return self.json("GET", "/v1/info")

    def json(self, method: str, path: str, body: object | None = None, timeout_s: float | None = None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        with self._open(method, path, data, headers, timeout_s) as response:
            return json.loads(response.read() or b"null")

    def text(self, method: str, path: str) -> str:
        with self._open(method, path) as response:
            return response.read().decode("utf-8", errors="replace")

    def upload(self, method: str, path: str, file: Path) -> dict:
        """Send ``file`` as the request body (streamed), with its SHA-256 in a header."""
        size, digest = Path(file).stat().st_size, file_sha256(file)
        headers = {CHECKSUM_HEADER: digest, "Content-Length": str(size), "Content-Type": "application/octet-stream"}
        with open(file, "rb") as stream, self._open(method, path, stream, headers) as response:
            return json.loads(response.read() or b"null")

    def download(self, path: str, target: Path) -> int:
        """Save the server's ``/v1/files/<path>`` at ``target`` (via a temporary file); returns its size."""
        size = 0
        with atomic_path(target) as temporary, self._open("GET", f"/v1/files/{urllib.parse.quote(path)}") as \
                response, open(temporary, "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                size += len(chunk)
        return size

    def events(self, job_id: str, after: int = 0, timeout_s: float = 60.0) -> Iterator[tuple[int | None, str, dict]]:
        """``(event number, event name, data)`` of a job's server-sent events after ``after``; ends with the
        ``end`` event. Raises :class:`RemoteError` (or ``OSError``) when the stream breaks: resume from the
        last number seen."""
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
        with self._open("GET", f"/v1/jobs/{job_id}/events?after={after}", None, headers, timeout_s) as response:
            number, name, data = None, "message", []
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith(":"):
                    continue
                if line:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "id":
                        number = int(value)
                    elif field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)
                    continue
                if data:
                    yield number, name, json.loads("\n".join(data))
                    if name == "end":
                        return
                number, name, data = None, "message", []
        raise RemoteError("The event stream ended before the job did.")

    # ----- internals -------------------------------------------------------------------------------------
    def _open(self, method: str, path: str, data=None, headers: dict | None = None, timeout_s: float | None = None):
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        context = ssl.create_default_context(cafile=self.cafile) if self.url.startswith("https") else None
        try:
            return urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s, context=context)
        except urllib.error.HTTPError as exc:
            raise RemoteError(f"{self.url} answered {exc.code}: {_error_message(exc)}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(f"Cannot reach the AutoSegNet server at {self.url}: {reason}. Is `autosegnet serve` "
                              "running there, and is the address right?") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        return exc.reason or "error"
    return str(body.get("error") or body.get("detail") or exc.reason) if isinstance(body, dict) else str(body)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
