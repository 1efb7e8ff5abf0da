"""``download-model``: a model zip fetched from a real HTTP server on 127.0.0.1 (or a file:// URL) is resumed with
Range requests after a break, checked for size and sha256 before anything is installed, and a host that cannot be
reached gives the offline error that says how to install without the network."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from _helpers_inference import DATASET, tiny_configuration, tiny_dataset_json, write_model_folder

from AutoSegNetLib.cli import main
from AutoSegNetLib.cli.download_model import DownloadProgress
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.models import download as download_module
from AutoSegNetLib.models import export_model
from AutoSegNetLib.models.download import DownloadRequest, download, download_folder
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.stop import StopRequest, StopRequested
from AutoSegNetLib.workspace import Workspace

torch.set_num_threads(2)
MODEL = "AutoSegNet__nnUNetPlans__3d_fullres"


class ZipServer:
    """A real HTTP server on 127.0.0.1 (a free port) serving ``files`` ({URL path: bytes}) with an ETag and Range
    requests (``ranges=False``: it ignores Range, as some servers do). ``break_after``: the next response sends only
    that many bytes of its body and closes the connection. ``requests`` records each request's path, Range and
    If-Range headers."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True) -> None:
        self.files = files
        self.ranges = ranges
        self.break_after: int | None = None
        self.requests: list[dict] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def etag(self, path: str) -> str:
        return '"' + hashlib.sha256(self.files[path]).hexdigest()[:16] + '"'

    def __enter__(self) -> ZipServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append({"path": self.path, "range": self.headers.get("Range"),
                                        "if_range": self.headers.get("If-Range")})
                if self.path not in server.files:
                    self.send_error(404, "Not Found")
                    return
                data, etag = server.files[self.path], server.etag(self.path)
                start = self._range_start(etag)
                if start is not None and start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if start is not None else 200)
                if start is not None:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                body = data[start or 0:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.end_headers()
                if server.break_after is not None:
                    body, server.break_after = body[:server.break_after], None
                    self.close_connection = True
                self.wfile.write(body)

            def _range_start(self, etag: str) -> int | None:
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if not server.ranges or not match or self.headers.get("If-Range") not in (None, etag):
                    return None
                return int(match.group(1))

            def log_message(self, *args) -> None:
                pass

        return Handler


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def a_model_zip(tmp_path_factory) -> bytes:
    """The bytes of a tiny AutoSegNet model zip (one fold)."""
    root = tmp_path_factory.mktemp("zip")
    source = Workspace.at(root / "source").create()
    (source.raw / DATASET).mkdir()
    write_model_folder(source.results, tiny_configuration(), tiny_dataset_json(), folds=(0,), mirror_axes=None)
    export_model(source, "1", ["3d_fullres"], root / "model.zip", folds=[0])
    return (root / "model.zip").read_bytes()


@pytest.fixture
def a_workspace(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path / "ws").create()


@pytest.fixture
def a_server(a_model_zip: bytes):
    with ZipServer({"/releases/model.zip": a_model_zip}) as server:
        yield server


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def downloads(workspace: Workspace) -> list[str]:
    """Partial or finished downloads in the workspace (the emptied lock files stay)."""
    return sorted(p.name for p in download_folder(workspace).iterdir() if p.suffix != ".lock")


def cli(workspace: Workspace, *args: str) -> int:
    return main(["--workspace", str(workspace.results.parent), *args])


def test_a_zip_downloaded_over_http_is_checked_installed_and_its_download_removed(a_server, a_model_zip,
                                                                                   a_workspace) -> None:
    url = a_server.url("/releases/model.zip")
    assert cli(a_workspace, "download-model", url, "--sha256", sha256(a_model_zip).upper()) == 0
    assert (a_workspace.results / DATASET / MODEL / "fold_0" / "checkpoint_final.pth").is_file()
    assert not downloads(a_workspace)
    assert [r["range"] for r in a_server.requests] == [None]


def test_a_broken_download_resumes_with_a_range_request_where_it_broke_off(a_server, a_model_zip, a_workspace,
                                                                            capsys) -> None:
    url = a_server.url("/releases/model.zip")
    a_server.break_after = 1000
    assert cli(a_workspace, "download-model", url) == 2
    assert "broke off after 1kB" in capsys.readouterr().err
    assert [p.stat().st_size for p in download_folder(a_workspace).glob("*.part")] == [1000]
    assert cli(a_workspace, "download-model", url, "--sha256", sha256(a_model_zip)) == 0
    assert [(r["range"], r["if_range"]) for r in a_server.requests] == [
        (None, None), ("bytes=1000-", a_server.etag("/releases/model.zip"))]
    assert (a_workspace.results / DATASET / MODEL).is_dir() and not downloads(a_workspace)


def test_a_file_changed_on_the_server_since_the_break_is_downloaded_again_whole(a_server, a_model_zip,
                                                                                a_workspace) -> None:
    url = a_server.url("/releases/model.zip")
    a_server.break_after = 1000
    with pytest.raises(AutoSegNetError, match="broke off"):
        download(DownloadRequest(url), download_folder(a_workspace))
    a_server.files["/releases/model.zip"] = changed = a_model_zip + b"\0"  # new ETag: If-Range gets it whole
    result = download(DownloadRequest(url, sha256=sha256(changed)), download_folder(a_workspace))
    assert result.path.read_bytes() == changed and result.resumed_from == 0


def test_a_server_that_ignores_range_sends_everything_again(a_model_zip, a_workspace) -> None:
    with ZipServer({"/model.zip": a_model_zip}, ranges=False) as server:
        server.break_after = 1000
        with pytest.raises(AutoSegNetError, match="broke off"):
            download(DownloadRequest(server.url("/model.zip")), download_folder(a_workspace))
        result = download(DownloadRequest(server.url("/model.zip"), sha256=sha256(a_model_zip)),
                          download_folder(a_workspace))
    assert result.path.read_bytes() == a_model_zip and result.resumed_from == 0


def test_a_wrong_sha256_is_refused_the_download_deleted_and_nothing_installed(a_server, a_workspace, capsys) -> None:
    assert cli(a_workspace, "download-model", a_server.url("/releases/model.zip"), "--sha256", "0" * 64) == 2
    assert "sha256 of the download is" in capsys.readouterr().err
    assert not (a_workspace.results / DATASET).exists()
    assert not downloads(a_workspace)


def test_a_file_of_another_size_than_expected_is_refused_before_it_is_downloaded(a_server, a_model_zip,
                                                                                 a_workspace) -> None:
    request = DownloadRequest(a_server.url("/releases/model.zip"), size=len(a_model_zip) + 1)
    with pytest.raises(AutoSegNetError, match=f"is {len(a_model_zip)} bytes according to the server, but "
                                              f"{len(a_model_zip) + 1} bytes are expected"):
        download(request, download_folder(a_workspace))
    assert not list(download_folder(a_workspace).glob("*.part"))


def test_a_file_larger_than_max_size_is_refused_before_it_is_downloaded(a_server, a_workspace) -> None:
    with pytest.raises(AutoSegNetError, match="more than --max-size 1kB"):
        download(DownloadRequest(a_server.url("/releases/model.zip"), max_size=1000), download_folder(a_workspace))


def test_an_unreachable_host_gives_the_offline_error_with_the_install_model_hint(a_workspace, capsys) -> None:
    port = closed_port()
    assert cli(a_workspace, "download-model", f"http://127.0.0.1:{port}/model.zip") == 2
    err = capsys.readouterr().err
    assert f"cannot reach 127.0.0.1:{port}: " in err
    assert "download the zip elsewhere and run `autosegnet install-model <zip>`" in err


def test_a_missing_file_on_the_server_names_the_status(a_server, a_workspace, capsys) -> None:
    assert cli(a_workspace, "download-model", a_server.url("/releases/other.zip")) == 2
    assert "the server answered 404 Not Found" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["ftp://example.org/model.zip", "model.zip", "https:///model.zip"])
def test_urls_other_than_https_http_and_file_are_refused(url: str) -> None:
    with pytest.raises(AutoSegNetError, match="not a download URL"):
        DownloadRequest(url)


def test_a_malformed_sha256_is_refused_with_how_to_compute_one(a_server) -> None:
    with pytest.raises(AutoSegNetError, match="sha256sum"):
        DownloadRequest(a_server.url("/releases/model.zip"), sha256="abc")


def test_file_urls_are_downloaded_and_installed_too(a_model_zip, a_workspace, tmp_path) -> None:
    (tmp_path / "model.zip").write_bytes(a_model_zip)
    url = (tmp_path / "model.zip").as_uri()
    assert cli(a_workspace, "download-model", url, "--sha256", sha256(a_model_zip)) == 0
    assert (a_workspace.results / DATASET / MODEL).is_dir()


def test_json_progress_gives_download_events_and_a_done_event_with_the_kind(a_server, a_model_zip, a_workspace,
                                                                            capsys, monkeypatch) -> None:
    monkeypatch.setattr(download_module, "_CHUNK", 4096)
    url = a_server.url("/releases/model.zip")
    assert cli(a_workspace, "--progress", "json", "download-model", url) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    downloads = [e for e in events if e["event"] == "download"]
    assert downloads[-1]["bytes"] == downloads[-1]["total"] == len(a_model_zip) and downloads[-1]["url"] == url
    done = events[-1]
    assert done["event"] == "done" and done["kind"] == "autosegnet" and done["stage"] == "download-model"
    assert done["installed"] == [str(a_workspace.results / DATASET / MODEL)]


def test_a_stop_keeps_the_part_and_the_next_run_resumes_it(a_server, a_model_zip, a_workspace, monkeypatch) -> None:
    monkeypatch.setattr(download_module, "_CHUNK", 4096)
    stop = StopRequest()
    request = DownloadRequest(a_server.url("/releases/model.zip"), sha256=sha256(a_model_zip))
    with pytest.raises(StopRequested, match="run the same command to resume"):
        download(request, download_folder(a_workspace), progress=lambda done, total: stop.request("test"), stop=stop)
    assert [p.stat().st_size for p in download_folder(a_workspace).glob("*.part")] == [4096]
    result = download(request, download_folder(a_workspace))
    assert result.resumed_from == 4096 and result.path.read_bytes() == a_model_zip


def test_a_complete_download_that_failed_to_install_is_not_fetched_again(a_server, a_model_zip, a_workspace,
                                                                         capsys) -> None:
    url = a_server.url("/releases/model.zip")
    assert cli(a_workspace, "download-model", url) == 0
    assert cli(a_workspace, "download-model", url) == 2  # installed already: needs --force; the zip is kept
    assert "--force" in capsys.readouterr().err
    assert cli(a_workspace, "download-model", url, "--force", "--sha256", sha256(a_model_zip)) == 0
    assert [r["range"] for r in a_server.requests] == [None, None, f"bytes={len(a_model_zip)}-"]  # 416: complete


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does in an interactive shell."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_shows_a_byte_progress_bar_and_a_log_shows_every_tenth(caplog) -> None:
    terminal = Terminal()
    bar = DownloadProgress(ProgressReporter("text"), "https://example.org/files/model.zip", stream=terminal)
    for done in (250_000, 1_000_000):
        bar(done, 1_000_000)
    bar.close()
    assert "model.zip:  25%" in terminal.getvalue()  # tqdm redraws at most every 0.1 s
    lines = DownloadProgress(ProgressReporter("text"), "https://example.org/files/model.zip", stream=io.StringIO())
    with caplog.at_level(logging.INFO):
        for done in range(0, 1_000_001, 50_000):
            lines(done, 1_000_000)
    assert [r.getMessage().split(": ")[1].split(" ")[0] for r in caplog.records if "download" in r.getMessage()] == [
        f"{10 * k}%" for k in range(1, 11)]


def test_a_second_download_of_the_same_url_is_refused_while_the_first_runs(a_server, a_workspace) -> None:
    url = a_server.url("/releases/model.zip")
    running = download_module._lock(url, download_folder(a_workspace))
    with running, pytest.raises(AutoSegNetError, match=f"The download of {url} is already running: PID"):
        download(DownloadRequest(url), download_folder(a_workspace))
    assert download(DownloadRequest(url), download_folder(a_workspace)).size > 0
