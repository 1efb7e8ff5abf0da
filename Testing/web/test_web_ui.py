"""The web UI end to end: the real ``autosegnet web`` server, driven by Debian's chromium through Playwright.

Runs only in the web environment (``make web-test``: trame-slicer pins slicer-core 5.11, docs/decisions/0021);
the main suite skips it. Screenshots go to ``docs/web/``.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
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


@contextlib.contextmanager
def web_server(workspace: Path, port: int, log: Path):
    """``python -m AutoSegNetLib web`` on ``port`` over ``workspace``, until the block ends; yields its URL."""
    log_file = log.open("a")
    process = subprocess.Popen([sys.executable, "-m", "AutoSegNetLib", "web", "--workspace", str(workspace),
                                "--port", str(port)], cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                               env={**os.environ, "OMP_NUM_THREADS": "2"})
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log_file.close()


@pytest.fixture
def a_web_server(tmp_path):
    """A web server on a free loopback port; yields (url, workspace); its log is ``tmp_path/server.log``."""
    workspace = tmp_path / "workspace"
    with web_server(workspace, free_port(), tmp_path / "server.log") as url:
        yield url, workspace


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


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    pytest.fail(f"{what} did not happen within {timeout_s} s")


def fill(page, selector: str, value: str) -> None:
    """Type into a field and give the page a moment to send it (a click right after can overtake it)."""
    page.fill(selector, value)
    time.sleep(0.5)


def load(page, image: Path) -> None:
    fill(page, "#asn-path", str(image))
    page.click("#asn-load")
    expect_text(page, "#asn-message", lambda t: t.startswith(f"Loaded {image.name.split('.')[0]}"), 60,
                "loading the volume")
    time.sleep(3)  # the first rendered image


def label_voxels(path: Path) -> int:
    import numpy as np
    import SimpleITK as sitk

    return int(np.count_nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))))


@pytest.mark.slow
def test_the_whole_loop_in_the_browser(a_web_server):
    """Paint -> add case -> train -> stop -> resume -> upload and segment another case -> correct -> add it ->
    download the segmentation -> retrain -> download the model zip."""
    url, workspace = a_web_server
    first, second = (shared_data_path("Task04_Hippocampus", "imagesTr", f"hippocampus_00{k}.nii.gz") for k in (1, 3))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        page.goto(url)
        page.wait_for_selector("#asn-path", timeout=60_000)
        load(page, first)
        page.screenshot(path=str(SCREENSHOTS / "loaded.png"))

        paint_stroke(page, *slice_view_centre(page))
        painted = int(expect_text(page, "#asn-painted", lambda t: not t.startswith("0 "), 30, "painting").split()[0])
        page.screenshot(path=str(SCREENSHOTS / "paint.png"))
        page.click("#asn-add-case")
        expect_text(page, "#asn-case-count", lambda t: t.startswith("1 case"), 20, "adding the case")

        fill(page, "#asn-epochs", "20")
        fill(page, "#asn-iterations", "2")
        page.click("#asn-train")
        label = workspace / "raw" / DATASET / "labelsTr" / "case_0001.nii.gz"
        wait_for(label.is_file, 120, f"the export of {label}")
        assert label_voxels(label) == painted, "the exported label map must hold exactly the painted voxels"
        expect_text(page, "#asn-train-progress", lambda t: "epoch" in t, 240, "the first epoch")
        page.screenshot(path=str(SCREENSHOTS / "train.png"))
        page.reload()  # the state lives on the server: a reloaded page shows the running training and the cases
        page.wait_for_selector("#asn-path", timeout=60_000)
        expect_text(page, "#asn-train-progress", lambda t: t.startswith("running"), 30, "the reloaded page")
        assert page.locator("#asn-case-count").inner_text().startswith("1 case")
        page.click("#asn-stop")
        stopped = expect_text(page, "#asn-train-progress", lambda t: t.startswith("stopped"), 180, "stopping")

        fill(page, "#asn-epochs", "2")
        page.click("#asn-resume")
        expect_text(page, "#asn-train-progress", lambda t: t.startswith("finished"), 300, "the resumed training")
        wait_for(lambda: "v001" in page.locator("#asn-models").inner_text(), 30, "model v001 in the list")

        page.set_input_files("input[type=file]:not([webkitdirectory])", str(second))  # trame-slicer's upload
        expect_text(page, "#asn-message", lambda t: t.startswith("Uploaded and loaded hippocampus_003"), 60,
                    "uploading the second volume")
        assert list(workspace.glob("uploads/*/hippocampus_003.nii.gz")), "the upload is kept in the workspace"
        assert page.locator("#asn-case-count").inner_text().startswith("1 case"), "an upload keeps the cases"
        time.sleep(3)
        page.click("#asn-uncertainty")
        page.click("#asn-segment")
        expect_text(page, "#asn-segment-progress", lambda t: t.startswith("finished"), 240, "segmenting")
        expect_text(page, "#asn-message", lambda t: t.startswith("Segmented: Segment_1 (uncertainty"), 30,
                    "the result and its uncertainty shown")
        segments = page.locator("#asn-segments").inner_text()  # named from the model (the painted segment)
        assert segments == "Segments: Segment_1"
        page.screenshot(path=str(SCREENSHOTS / "segment.png"))

        paint_stroke(page, *slice_view_centre(page))  # the correction
        page.click("#asn-add-corrected")
        expect_text(page, "#asn-case-count", lambda t: t.startswith("2 case"), 20, "adding the corrected case")
        assert "corrected" in page.locator("#asn-cases").inner_text()

        page.click("#asn-download-nifti")
        link = page.locator(".asn-download-link").first
        link.wait_for(timeout=20_000)
        downloaded = urllib.request.urlopen(url + link.get_attribute("href"), timeout=10).read()
        saved = workspace / "downloads" / link.inner_text().strip()
        assert downloaded == saved.read_bytes() and label_voxels(saved) > 0  # the segmentation as corrected

        fill(page, "#asn-epochs", "1")
        page.click("#asn-retrain")
        expect_text(page, "#asn-train-progress", lambda t: t.startswith("running"), 60, "starting the retraining")
        expect_text(page, "#asn-train-progress", lambda t: t.startswith("finished"), 300, "the retraining")
        wait_for(lambda: "v002" in page.locator("#asn-models").inner_text(), 30, "model v002 in the list")
        page.screenshot(path=str(SCREENSHOTS / "retrain.png"))

        page.click("#asn-export-model")
        expect_text(page, "#asn-zip-progress", lambda t: t.startswith("finished"), 120, "zipping the model")
        zip_link = page.locator(".asn-download-link", has_text=".zip")
        zip_link.wait_for(timeout=20_000)
        archive = urllib.request.urlopen(url + zip_link.get_attribute("href"), timeout=30).read()
        browser.close()
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        assert any(name.endswith("checkpoint_final.pth") for name in zipped.namelist())
    print(f"painted {painted}; {stopped!r}; {segments!r}; downloaded {saved.name}")


@pytest.mark.slow
def test_a_restarted_server_reattaches_to_the_running_training(tmp_path):
    """The training runs in its own engine process: a new ``autosegnet web`` on the same workspace follows it and
    can stop it."""
    workspace, port, log = tmp_path / "workspace", free_port(), tmp_path / "server.log"
    image = shared_data_path("Task04_Hippocampus", "imagesTr", "hippocampus_001.nii.gz")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        with web_server(workspace, port, log) as url:
            page.goto(url)
            page.wait_for_selector("#asn-path", timeout=60_000)
            load(page, image)
            paint_stroke(page, *slice_view_centre(page))
            expect_text(page, "#asn-painted", lambda t: not t.startswith("0 "), 30, "painting")
            page.click("#asn-add-case")
            expect_text(page, "#asn-case-count", lambda t: t.startswith("1 case"), 20, "adding the case")
            fill(page, "#asn-epochs", "50")
            fill(page, "#asn-iterations", "2")
            page.click("#asn-train")
            expect_text(page, "#asn-train-progress", lambda t: "epoch" in t, 240, "the first epoch")
        with web_server(workspace, port, log) as url:  # the same address: the page's user just reloads
            page.goto(url)
            page.wait_for_selector("#asn-path", timeout=60_000)
            expect_text(page, "#asn-message", lambda t: t.startswith("Re-attached to 1 running job"), 60,
                        "re-attaching")
            expect_text(page, "#asn-train-progress", lambda t: t.startswith("running"), 30, "following it")
            page.click("#asn-stop")
            expect_text(page, "#asn-train-progress", lambda t: t.startswith("stopped"), 180, "stopping it")
        browser.close()
    assert list(workspace.glob("results/*/*/fold_all/checkpoint_latest.pth")), "a stop leaves checkpoint_latest"


def test_the_web_command_refuses_a_non_loopback_host():
    from AutoSegNetLib.cli.web import check_loopback
    from AutoSegNetLib.errors import AutoSegNetError

    for host in ("127.0.0.1", "::1", "localhost"):
        check_loopback(host)
    with pytest.raises(AutoSegNetError, match="no authentication"):
        check_loopback("0.0.0.0")

