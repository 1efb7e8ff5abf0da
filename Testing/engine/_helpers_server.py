"""A real ``autosegnet serve`` process on a free port, and small datasets to send it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from AutoSegNetLib.demo.synthetic import write_synthetic_dataset
from AutoSegNetLib.remote.connection import Connection
from AutoSegNetLib.workspace import Workspace

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef000"
TOKENS = f"alice:{ALICE},bob:{BOB}"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python -m AutoSegNetLib serve`` in a subprocess; ``url``, ``stop()``, ``log()``."""

    def __init__(self, workspace: Path, port: int | None = None, tokens: str | None = TOKENS, *extra: str,
                 scheme: str = "http", cafile: str | None = None) -> None:
        self.workspace, self.port, self.cafile = Path(workspace), port or free_port(), cafile
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(REPO), "AUTOSEGNET_SERVER_TOKENS": tokens or ""}
        self.log_path = self.workspace.parent / f"server-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "AutoSegNetLib", "serve", "--workspace", str(workspace), "--port",
                 str(self.port), *extra], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        try:
            self._wait_until_up()
        except BaseException:  # a server that never answered must not outlive the test
            self.stop()
            raise

    def _wait_until_up(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log()}")
            with contextlib.suppress(OSError):
                context = ssl.create_default_context(cafile=self.cafile) if self.cafile else None
                urllib.request.urlopen(f"{self.url}/openapi.json", timeout=2, context=context).read()
                return
            time.sleep(0.2)
        raise TimeoutError(f"the server did not start: {self.log()}")

    def connection(self, token: str = ALICE) -> Connection:
        return Connection(self.url, token, timeout_s=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextlib.contextmanager
def running_server(workspace: Path, *extra: str, tokens: str | None = TOKENS, scheme: str = "http",
                   cafile: str | None = None) -> Iterator[Server]:
    server = Server(workspace, None, tokens, *extra, scheme=scheme, cafile=cafile)
    try:
        yield server
    finally:
        server.stop()


def synthetic_raw_dataset(root: Path, num_cases: int = 4) -> Path:
    """A small raw dataset whose dataset.json records content hashes (as the module's export writes them)."""
    folder = write_synthetic_dataset(Workspace.at(root).create(), num_cases=num_cases)
    data = json.loads((folder / "dataset.json").read_text())
    hashes = {}
    for label in sorted((folder / "labelsTr").glob("*.nii.gz")):
        case = label.name[: -len(".nii.gz")]
        digest = hashlib.sha256(label.read_bytes())
        for image in sorted((folder / "imagesTr").glob(f"{case}_*.nii.gz")):
            digest.update(image.read_bytes())
        hashes[case] = digest.hexdigest()
    data["autosegnet"] = {"case_hashes": hashes}
    (folder / "dataset.json").write_text(json.dumps(data))
    return folder


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())
