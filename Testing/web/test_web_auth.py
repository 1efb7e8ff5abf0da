"""Tokens for ``autosegnet web``: the rule itself (pure, main suite) and the real server in the web environment.

The end-to-end tests are slow and skipped without trame-slicer: run them with
``/work/venv-web/bin/python -m pytest -q -m "slow or not slow" Testing/web/test_web_auth.py``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from AutoSegNetLib.cli.serve import read_tokens
from AutoSegNetLib.cli.web import check_host, check_loopback, run
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.web.auth import COOKIE_NAME, Decision, bearer_token, decide, match_token, tls_context
from Testing.conftest import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "radiology-0123456789abcdef"
OTHER_TOKEN = "surgery-fedcba9876543210"
TOKENS = {TOKEN: "radiology", OTHER_TOKEN: "surgery"}


# --- the rule -------------------------------------------------------------------------------------------------


def test_a_known_token_gives_its_name_and_an_unknown_one_none():
    assert match_token(TOKEN, TOKENS) == "radiology"
    assert match_token(OTHER_TOKEN, TOKENS) == "surgery"
    assert match_token(TOKEN[:-1], TOKENS) is None
    assert match_token(TOKEN + "x", TOKENS) is None
    assert match_token("jeton-é-0123456789abcdef", TOKENS) is None  # non-ASCII does not raise
    assert match_token(TOKEN, {}) is None


@pytest.mark.parametrize(("header", "token"), [
    (f"Bearer {TOKEN}", TOKEN), (f"bearer  {TOKEN} ", TOKEN), ("Bearer", None), ("Bearer ", None),
    (f"Basic {TOKEN}", None), ("", None), (None, None)])
def test_the_bearer_token_is_read_from_the_authorization_header(header, token):
    assert bearer_token(header) == token


def test_a_request_without_any_token_is_refused():
    assert decide(TOKENS) == Decision(None)
    assert not decide(TOKENS).allowed
    assert decide(TOKENS, query_token="", authorization="", cookie="") == Decision(None)


def test_a_right_token_in_the_url_is_allowed_and_stored_in_the_cookie():
    assert decide(TOKENS, query_token=TOKEN) == Decision("radiology", TOKEN)


def test_a_wrong_token_in_the_url_is_refused_even_beside_a_valid_cookie():
    assert decide(TOKENS, query_token="wrong-0123456789abcdef") == Decision(None)
    assert decide(TOKENS, query_token="wrong-0123456789abcdef", cookie=TOKEN) == Decision(None)


def test_a_right_cookie_or_bearer_header_is_allowed_without_setting_a_cookie():
    assert decide(TOKENS, cookie=OTHER_TOKEN) == Decision("surgery")
    assert decide(TOKENS, authorization=f"Bearer {TOKEN}") == Decision("radiology")
    assert decide(TOKENS, authorization=f"Basic {TOKEN}", cookie=TOKEN) == Decision("radiology")


def test_a_wrong_cookie_or_bearer_header_is_refused():
    assert decide(TOKENS, cookie="wrong-0123456789abcdef") == Decision(None)
    assert decide(TOKENS, authorization="Bearer wrong-0123456789abcdef", cookie=TOKEN) == Decision(None)


def test_with_tokens_any_host_is_allowed():
    for host in ("0.0.0.0", "::", "192.168.1.20", "gpu-box.example.org", "127.0.0.1"):
        check_host(host, TOKENS)


def test_without_tokens_only_loopback_hosts_are_allowed():
    for host in ("127.0.0.1", "::1", "localhost"):
        check_host(host, {})
        check_loopback(host)
    for host in ("0.0.0.0", "::", "192.168.1.20"):
        with pytest.raises(AutoSegNetError, match="no authentication.*--token-file"):
            check_host(host, {})


def test_the_web_command_reads_the_tokens_of_autosegnet_serve(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOSEGNET_SERVER_TOKENS", f"radiology:{TOKEN},surgery:{OTHER_TOKEN}")
    assert read_tokens(None) == TOKENS
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(f"# the file wins over the variable\nsurgery:{OTHER_TOKEN}\n")
    assert read_tokens(token_file) == {OTHER_TOKEN: "surgery"}
    monkeypatch.setenv("AUTOSEGNET_SERVER_TOKENS", "radiology:short")
    with pytest.raises(AutoSegNetError, match="shorter than 16"):
        read_tokens(None)


def test_the_web_command_refuses_0_0_0_0_when_no_token_is_given(tmp_path, monkeypatch):
    monkeypatch.delenv("AUTOSEGNET_SERVER_TOKENS", raising=False)
    args = argparse.Namespace(host="0.0.0.0", port=8080, token_file=None, certfile=None, keyfile=None,
                              workspace=str(tmp_path))
    with pytest.raises(AutoSegNetError, match="no authentication"):
        run(args, None)


def test_tls_needs_both_files_and_names_a_file_it_cannot_load(tmp_path):
    assert tls_context(None, None) is None
    with pytest.raises(AutoSegNetError, match="both --certfile and --keyfile"):
        tls_context(tmp_path / "cert.pem", None)
    with pytest.raises(AutoSegNetError, match="cert.pem"):
        tls_context(tmp_path / "cert.pem", tmp_path / "key.pem")


# --- the real server (web environment) ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_http(port: int, context: ssl.SSLContext | None) -> bool:
    """True once the server answers anything (401 included) on ``port``."""
    connection = (http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context) if context
                  else http.client.HTTPConnection("127.0.0.1", port, timeout=2))
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        connection.close()


def start_web(tmp_path: Path, *extra: str, context: ssl.SSLContext | None = None, timeout_s: float = 120):
    """``python -m AutoSegNetLib web`` with ``--token-file`` on a free port; returns (process, port, log)."""
    pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (web environment: make web-test)")
    port, token_file, log = free_port(), tmp_path / "tokens.txt", tmp_path / "server.log"
    token_file.write_text(f"# web users\nradiology:{TOKEN}\nsurgery:{OTHER_TOKEN}\n")
    env = {key: value for key, value in os.environ.items() if key != "AUTOSEGNET_SERVER_TOKENS"}
    with log.open("w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "AutoSegNetLib", "web", "--workspace",
                                    str(tmp_path / "workspace"), "--host", "127.0.0.1", "--port", str(port),
                                    "--token-file", str(token_file), *extra], cwd=REPO_ROOT, stdout=log_file,
                                   stderr=subprocess.STDOUT, env={**env, "OMP_NUM_THREADS": "2"})
    deadline = time.monotonic() + timeout_s
    while not answers_http(port, context):
        if process.poll() is not None:
            pytest.fail(f"autosegnet web exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"autosegnet web did not answer on port {port} within {timeout_s} s")
        time.sleep(1)
    return process, port, log


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)


@pytest.fixture(scope="module")
def a_token_web_server(tmp_path_factory):
    """The real web UI with two tokens on a free loopback port; yields its base URL."""
    process, port, _ = start_web(tmp_path_factory.mktemp("web_auth"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def get(url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None):
    """GET following redirects, with no cookie jar: (status, headers of the last answer, body)."""
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status, response.headers, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode("utf-8", "replace")


def websocket_status(base_url: str, headers: dict[str, str]) -> int:
    """The status of a websocket upgrade request to ``/ws`` (101: upgraded)."""
    connection = http.client.HTTPConnection(base_url.removeprefix("http://"), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    try:
        connection.request("GET", "/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                  "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key, **headers})
        return connection.getresponse().status
    finally:
        connection.close()


def cookie_of(headers) -> str:
    """``NAME=VALUE`` of our cookie in a response's Set-Cookie headers (asserting its attributes)."""
    [set_cookie] = [value for value in headers.get_all("Set-Cookie") or [] if value.startswith(f"{COOKIE_NAME}=")]
    attributes = [part.strip() for part in set_cookie.split(";")]
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes), set_cookie
    return attributes[0]


@pytest.mark.slow
def test_the_web_ui_refuses_requests_without_a_right_token(a_token_web_server):
    status, headers, body = get(a_token_web_server + "/")
    assert (status, headers.get("WWW-Authenticate")) == (401, "Bearer")
    assert "?token=TOKEN" in body and "Authorization: Bearer TOKEN" in body
    assert get(a_token_web_server + "/?token=wrong-0123456789abcdef")[0] == 401
    assert get(a_token_web_server + "/", {"Cookie": f"{COOKIE_NAME}=wrong-0123456789abcdef"})[0] == 401
    assert get(a_token_web_server + "/index.html", {"Authorization": "Bearer wrong-0123456789abcdef"})[0] == 401


@pytest.mark.slow
def test_a_right_token_in_the_url_sets_a_cookie_that_opens_the_ui(a_token_web_server):
    status, headers, body = get(f"{a_token_web_server}/?token={TOKEN}")
    assert status == 200 and "<html" in body.lower()
    assert headers.get("Referrer-Policy") == "no-referrer"
    cookie = cookie_of(headers)
    assert cookie == f"{COOKIE_NAME}={TOKEN}"
    status, headers, body = get(a_token_web_server + "/", {"Cookie": cookie})
    assert status == 200 and "<html" in body.lower()
    assert headers.get_all("Set-Cookie") is None
    assert get(a_token_web_server + "/index.html", {"Authorization": f"Bearer {OTHER_TOKEN}"})[0] == 200


@pytest.mark.slow
def test_the_websocket_upgrades_only_with_a_right_token(a_token_web_server):
    assert websocket_status(a_token_web_server, {}) == 401
    assert websocket_status(a_token_web_server, {"Cookie": f"{COOKIE_NAME}=wrong-0123456789abcdef"}) == 401
    assert websocket_status(a_token_web_server, {"Cookie": f"{COOKIE_NAME}={TOKEN}"}) == 101
    assert websocket_status(a_token_web_server, {"Authorization": f"Bearer {OTHER_TOKEN}"}) == 101


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command to make a test certificate")
def test_with_a_certificate_the_web_ui_answers_https_with_a_secure_cookie(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    process, port, _ = start_web(tmp_path, "--certfile", str(cert), "--keyfile", str(key), context=context)
    try:
        assert get(f"https://127.0.0.1:{port}/", context=context)[0] == 401
        status, headers, _ = get(f"https://127.0.0.1:{port}/?token={TOKEN}", context=context)
        assert status == 200
        assert "Secure" in [part.strip() for part in headers.get("Set-Cookie").split(";")]
    finally:
        stop(process)


@pytest.mark.slow
def test_a_browser_opened_with_the_token_renders_the_ui_over_the_cookie(a_token_web_server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make web-test)")
    if not CHROMIUM.is_file():
        pytest.skip(f"no chromium at {CHROMIUM} (apt install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox",
                                                                                   "--disable-gpu"])
        page = browser.new_page()
        refused, websockets = [], []
        page.on("response", lambda response: response.status == 401 and refused.append(response.url))
        page.on("websocket", lambda websocket: websockets.append(websocket.url))
        page.goto(f"{a_token_web_server}/?token={TOKEN}")
        page.locator("#asn-path").wait_for(timeout=60_000)  # drawn from the server's state: the websocket is up
        page.goto(a_token_web_server + "/")  # again, without the token: the cookie carries it
        page.locator("#asn-path").wait_for(timeout=60_000)
        browser.close()
    assert refused == []
    assert websockets == [a_token_web_server.replace("http", "ws") + "/ws"] * 2
