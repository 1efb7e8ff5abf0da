"""``autosegnet serve``: tokens on every route, one namespace per token, uploads that cannot escape or overflow.

Every test talks to a real server process over HTTP.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request

import pytest

from AutoSegNetLib.remote.connection import Connection, RemoteError
from AutoSegNetLib.remote.dataset_sync import sync_dataset
from Testing.engine._helpers_server import ALICE, BOB, REPO, files_under, running_server, synthetic_raw_dataset

pytest.importorskip("fastapi", reason="the server needs the 'server' extra (fastapi, uvicorn)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("server") / "workspace", "--max-upload-mb", "1") as running:
        yield running


def _request(url: str, method: str, token: str | None, body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _routes(server) -> list[tuple[str, str]]:
    schema = json.loads(urllib.request.urlopen(f"{server.url}/openapi.json").read())
    filled = {"{dataset}": "Dataset001_X", "{case}": "case_000", "{job_id}": "20260101-000000-train",
              "{path}": "jobs/x.txt"}
    routes = []
    for path, methods in schema["paths"].items():
        for placeholder, value in filled.items():
            path = path.replace(placeholder, value)
        routes += [(method.upper(), path) for method in methods]
    return routes


def test_every_route_of_the_schema_refuses_a_missing_or_wrong_token_with_a_json_error(server):
    routes = _routes(server)
    assert len(routes) >= 14
    for method, path in routes:
        for token in (None, "wrong-token-0123456789", ALICE[:-1]):
            status, body = _request(server.url + path, method, token, b"{}" if method in ("PUT", "POST") else None)
            assert status == 401, (method, path, token, status)
            assert "token" in json.loads(body)["error"]


def test_a_client_sees_only_its_own_namespace(server, tmp_path):
    alice, bob = server.connection(ALICE), server.connection(BOB)
    sync_dataset(alice, synthetic_raw_dataset(tmp_path / "local", 2))
    assert alice.json("GET", "/v1/datasets") == ["Dataset900_SyntheticEllipsoids"]
    assert bob.json("GET", "/v1/datasets") == []
    with pytest.raises(RemoteError) as refused:
        bob.json("GET", "/v1/datasets/Dataset900_SyntheticEllipsoids")
    assert refused.value.status == 404
    with pytest.raises(RemoteError):
        bob.download("raw/Dataset900_SyntheticEllipsoids/dataset.json", tmp_path / "stolen.json")
    assert alice.info()["client"] == "alice" and bob.info()["client"] == "bob"


@pytest.mark.parametrize("path", ["../x.txt", "jobs/../../x.txt", "raw/x.txt", ".hidden/x", "jobs/.x", "jobs//..",
                                  "%2e%2e/x.txt", "jobs/%2e%2e/%2e%2e/x.txt"])
def test_a_file_upload_outside_the_jobs_folder_is_refused_and_nothing_is_written(server, tmp_path, path):
    before = files_under(server.workspace)
    status, body = _request(f"{server.url}/v1/files/{path}", "PUT", ALICE, b"data",
                            {"X-Content-SHA256": "0" * 64})
    assert status in (400, 404), (path, status, body)
    assert files_under(server.workspace) == before


def _tar(members: dict[str, bytes], link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo("labelsTr/case_000.nii.gz")
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
    return buffer.getvalue()


@pytest.mark.parametrize("archive", [
    _tar({"../../evil.nii.gz": b"x", "labelsTr/case_000.nii.gz": b"x"}),
    _tar({"imagesTr/other_0000.nii.gz": b"x", "labelsTr/case_000.nii.gz": b"x"}),
    _tar({"imagesTr/case_000_0000.nii.gz": b"x"}, link="/etc/passwd"),
    _tar({"imagesTr/case_000_0000.nii.gz": b"x"}),
    b"not a tar archive at all",
], ids=["escape", "other case", "symlink", "no label", "garbage"])
def test_a_bad_case_archive_is_refused_and_nothing_is_written(server, archive):
    import hashlib

    before = files_under(server.workspace)
    status, body = _request(f"{server.url}/v1/datasets/Dataset001_Bad/cases/case_000", "PUT", ALICE, archive,
                            {"X-Content-SHA256": hashlib.sha256(archive).hexdigest()})
    assert status in (400, 500) and json.loads(body)["error"]
    assert "Traceback" not in body.decode()
    assert [f for f in files_under(server.workspace) if "Dataset001_Bad" in f] == []
    assert files_under(server.workspace) == before


def test_an_oversized_upload_and_a_damaged_one_are_refused_and_nothing_is_written(server):
    before = files_under(server.workspace)
    big = b"x" * (2 * 2**20)
    status, body = _request(f"{server.url}/v1/files/jobs/in/big.bin", "PUT", ALICE, big,
                            {"X-Content-SHA256": "0" * 64})
    assert status == 413 and "limit" in json.loads(body)["error"]
    status, body = _request(f"{server.url}/v1/files/jobs/in/small.bin", "PUT", ALICE, b"abc",
                            {"X-Content-SHA256": "0" * 64})
    assert status == 400 and "SHA-256" in json.loads(body)["error"]
    status, body = _request(f"{server.url}/v1/files/jobs/in/small.bin", "PUT", ALICE, b"abc")
    assert status == 400 and "X-Content-SHA256" in json.loads(body)["error"]
    assert [f for f in files_under(server.workspace) if "/jobs/in/" in f] == []
    assert files_under(server.workspace) == before


@pytest.mark.parametrize("command, args, message", [
    ("serve", [], "cannot be run"),
    ("train", ["Dataset001_X", "2d", "0", "--workspace", "elsewhere"], "set by the server"),
    ("train", ["Dataset001_X", "2d", "0", "--pretrained", "../../../etc/passwd"], "not a path inside"),
    ("train", ["/etc", "2d", "0"], "looks like a path"),
    ("predict", ["-i", "jobs/in", "-o", "results/out", "--model-folder", "results/m"], "only be uploaded under"),
    ("train", ["Dataset001_X", "2d", "0", "--epochz", "3"], "autosegnet train"),
])
def test_a_job_that_names_paths_outside_its_workspace_or_bad_options_is_refused(server, command, args, message):
    with pytest.raises(RemoteError) as refused:
        server.connection().json("POST", "/v1/jobs", {"command": command, "args": args})
    assert refused.value.status == 400 and message in str(refused.value)
    assert server.connection().json("GET", "/v1/jobs") == []


def test_an_open_server_refuses_to_listen_beyond_this_computer(tmp_path):
    result = subprocess.run([sys.executable, "-m", "AutoSegNetLib", "serve", "--workspace", str(tmp_path),
                             "--host", "0.0.0.0"], capture_output=True, text=True, cwd=str(REPO),
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, timeout=60)
    assert result.returncode == 2
    assert "without authentication" in result.stderr and "--token-file" in result.stderr


def test_an_open_server_on_localhost_serves_the_local_namespace(tmp_path):
    with running_server(tmp_path / "workspace", tokens=None) as server:
        connection = Connection(server.url)
        assert connection.info()["client"] == "local"
        assert (tmp_path / "workspace" / "clients" / "local" / "raw").is_dir()


def test_a_server_with_a_certificate_speaks_tls_and_the_client_checks_it(tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with running_server(tmp_path / "workspace", "--certfile", str(cert), "--keyfile", str(key),
                        scheme="https", cafile=str(cert)) as server:
        assert server.url.startswith("https://")
        assert Connection(server.url, ALICE, cafile=str(cert)).info()["client"] == "alice"
        with pytest.raises(RemoteError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            Connection(server.url, ALICE).info()  # not trusted without the certificate
