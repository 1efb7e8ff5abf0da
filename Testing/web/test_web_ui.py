"""The web UI end to end: the real ``autosegnet web`` server, driven by Debian's chromium through Playwright.

Runs only in the web environment (``make web-test``: trame-slicer pins slicer-core 5.11, docs/decisions/0021);
the main suite skips it. Screenshots go to ``docs/web/``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (the web UI has its own environment: "
                    "make web-test)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make web-test)")

from Testing.conftest import REPO_ROOT, shared_data_path  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = REPO_ROOT / "docs" / "web"
DATASET = "Dataset501_WebCases"

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no chromium at {CHROMIUM} (apt install chromium)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def a_web_server(tmp_path):
    """``python -m AutoSegNetLib web`` on a free loopback port; yields (url, workspace); its log is in tmp_path."""
    port, workspace = free_port(), tmp_path / "workspace"
    log_file = (tmp_path / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "AutoSegNetLib", "web", "--workspace", str(workspace),
                                "--port", str(port)], cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                               env={**os.environ, "OMP_NUM_THREADS": "2"})
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, process, tmp_path / "server.log")
        yield url, workspace
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log_file.close()


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"autosegnet web exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    pytest.fail(f"autosegnet web did not answer at {url} within {timeout_s} s")


def slice_view_centre(page) -> tuple[float, float]:
    """Centre of the largest image/canvas/video on the page: the remote-rendered slice view."""
    boxes = [box for selector in ("img", "canvas", "video") for element in page.locator(selector).all()
             if (box := element.bounding_box())]
    assert boxes, "no rendered view on the page"
    box = max(boxes, key=lambda b: b["width"] * b["height"])
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def paint_stroke(page, x: float, y: float) -> None:
    """A stroke with pauses between press, moves and release (without them no stroke reached the server)."""
    page.mouse.move(x - 40, y)
    time.sleep(0.5)
    page.mouse.down()
    time.sleep(0.3)
    for k in range(1, 21):
        page.mouse.move(x - 40 + 4 * k, y + k, steps=2)
        time.sleep(0.05)
    time.sleep(0.3)
    page.mouse.up()


def expect_text(page, selector: str, predicate, timeout_s: float, what: str) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = page.locator(selector).inner_text()
        if predicate(text):
            return text
        time.sleep(0.5)
    pytest.fail(f"{what}: {selector} still says {text!r} after {timeout_s} s")


@pytest.mark.slow
def test_a_painted_volume_becomes_a_case_that_trains_and_stops(a_web_server):
    url, workspace = a_web_server
    image = shared_data_path("Task04_Hippocampus", "imagesTr", "hippocampus_001.nii.gz")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 850})
        page.goto(url)
        page.wait_for_selector("#asn-path", timeout=60_000)
        page.fill("#asn-path", str(image))
        page.click("#asn-load")
        expect_text(page, "#asn-message", lambda t: t.startswith("Loaded"), 60, "loading the volume")
        time.sleep(3)  # the first rendered image
        page.screenshot(path=str(SCREENSHOTS / "loaded.png"))

        paint_stroke(page, *slice_view_centre(page))
        painted = expect_text(page, "#asn-painted", lambda t: not t.startswith("0 "), 30, "painting")
        page.screenshot(path=str(SCREENSHOTS / "paint.png"))

        page.click("#asn-add-case")
        expect_text(page, "#asn-case-count", lambda t: t.startswith("1 case"), 20, "adding the case")
        assert "case_0001" in page.locator("#asn-cases").inner_text()

        page.fill("#asn-epochs", "1")
        page.fill("#asn-iterations", "2")
        page.click("#asn-train")
        progress = expect_text(page, "#asn-progress", lambda t: t != "No training yet.", 30, "starting training")
        label = workspace / "raw" / DATASET / "labelsTr" / "case_0001.nii.gz"
        deadline = time.monotonic() + 120
        while not label.is_file() and time.monotonic() < deadline:
            time.sleep(1)
        later = expect_text(page, "#asn-progress", lambda t: t != progress, 60, "following the training")
        page.screenshot(path=str(SCREENSHOTS / "train.png"))
        page.click("#asn-stop")
        stopped = expect_text(page, "#asn-progress", lambda t: not t.startswith("running"), 180, "stopping")
        page.screenshot(path=str(SCREENSHOTS / "stopped.png"))
        browser.close()
    assert label.is_file(), f"the case was not exported to {label}"
    assert int(painted.split()[0]) > 0
    print(f"painted: {painted}\nprogress: {progress!r} -> {later!r} -> {stopped!r}")


def test_the_web_command_refuses_a_non_loopback_host():
    from AutoSegNetLib.cli.web import check_loopback
    from AutoSegNetLib.errors import AutoSegNetError

    for host in ("127.0.0.1", "::1", "localhost"):
        check_loopback(host)
    with pytest.raises(AutoSegNetError, match="no authentication"):
        check_loopback("0.0.0.0")

