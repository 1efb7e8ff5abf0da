"""``autosegnet download-model URL [--sha256 HEX]``: download a model zip (https, http or file://) and install it.

The download is resumable: it goes to a ``.part`` file in ``<workspace>/results/.downloads/``, and running the same
command again after a broken connection or a stop (``--stop-file``) fetches only the missing bytes (HTTP Range).
The size announced by the server and the sha256 (``--sha256``) are checked before anything is installed; without
``--sha256`` the computed one is logged. The zip may be an AutoSegNet zip (``export-model``) or an nnU-Net v2 export
(``nnUNetv2_export_model_to_zip``); the ``done`` event says which (``kind``). Progress: a bar on a terminal,
``download`` events (``bytes``, ``total``) with ``--progress json``, a log line per 10% elsewhere.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import urllib.parse
from pathlib import PurePosixPath
from typing import Any, TextIO

from AutoSegNetLib.cli.install_model import add_install_options, install_options, report_installed
from AutoSegNetLib.models.download import DownloadRequest, download_and_install
from AutoSegNetLib.models.sizes import format_size

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="https://, http:// or file:// URL of a model zip")
    parser.add_argument("--sha256", default=None, metavar="HEX",
                        help="the zip's published sha256 (64 hex digits); the download is refused if it differs")
    add_install_options(parser)


def run(args: argparse.Namespace, ctx) -> int:
    options = install_options(args)
    request = DownloadRequest(args.url, sha256=args.sha256, max_size=options.max_size)
    progress = DownloadProgress(ctx.reporter, args.url)
    try:
        installed = download_and_install(request, ctx.workspace, options, progress, ctx.stop)
    finally:
        progress.close()
    report_installed(ctx.reporter, "download-model", installed, url=args.url)
    return 0


class DownloadProgress:
    """Download progress for a person or a program: a tqdm bar on a terminal (``--progress text``), ``download``
    events at most every ``interval_s`` seconds (``--progress json``), a log line per 10% otherwise."""

    def __init__(self, reporter, url: str, stream: TextIO | None = None, interval_s: float = 0.5) -> None:
        self.reporter = reporter
        self.url = url
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.name = PurePosixPath(urllib.parse.urlsplit(url).path).name or url
        self._bar: Any = None
        self._next_event = 0.0
        self._next_tenth = 1

    def __call__(self, done: int, total: int | None) -> None:
        if self.reporter.mode == "json":
            self._event(done, total)
        elif self.reporter.mode == "text" and _is_tty(self.stream):
            self._advance_bar(done, total)
        elif self.reporter.mode == "text" and total:
            self._log_tenths(done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _event(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now >= self._next_event or done == total:
            self._next_event = now + self.interval_s
            self.reporter.emit("download", url=self.url, bytes=done, total=total)

    def _advance_bar(self, done: int, total: int | None) -> None:
        if self._bar is None:
            from tqdm import tqdm  # only on a terminal

            self._bar = tqdm(total=total, initial=done, desc=self.name, file=self.stream, unit="B", unit_scale=True,
                             unit_divisor=1024, leave=False, dynamic_ncols=True)
        self._bar.update(done - self._bar.n)

    def _log_tenths(self, done: int, total: int) -> None:
        tenth = done * 10 // total
        if tenth >= self._next_tenth:
            self._next_tenth = tenth + 1
            log.info("download %s: %d%% (%s of %s)", self.name, tenth * 10, format_size(done), format_size(total))


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
