"""``autosegnet install-model model.zip``: check a model zip (manifest, hashes, paths) and install it.

Two kinds of zips are accepted, told apart by their content: zips made by ``autosegnet export-model``
(``manifest.json``) and zips made by nnU-Net v2's ``nnUNetv2_export_model_to_zip``, whose model folders are
imported as ``import-nnunet`` does (``--trust-checkpoints`` for checkpoints holding arbitrary Python objects). The
``done`` event names the ``kind`` (``autosegnet`` / ``nnunet``) and the ``installed`` folders.

Stopped on request (``--stop-file``) before or while unpacking: nothing is installed, exit status 0 and a
``done`` event with ``status="stopped"``. ``--max-size`` caps the unpacked size (default 16GB; see
:data:`AutoSegNetLib.models.install.DEFAULT_MAX_SIZE`).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from AutoSegNetLib.models.install_any import Installed, InstallOptions, install_zip
from AutoSegNetLib.models.sizes import DEFAULT_MAX_SIZE, format_size, parse_size

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("zip", help="a zip made by `autosegnet export-model` or nnU-Net's "
                        "`nnUNetv2_export_model_to_zip`")
    add_install_options(parser)


def add_install_options(parser: argparse.ArgumentParser) -> None:
    """``--force``, ``--max-size`` and ``--trust-checkpoints`` (shared with download-model and models install)."""
    parser.add_argument("--force", action="store_true", help="replace model folders that are installed already")
    parser.add_argument("--max-size", default=format_size(DEFAULT_MAX_SIZE), metavar="SIZE",
                        help="refuse zips that unpack to more than this, e.g. 8GB, 500MB, 2GiB (default "
                        f"{format_size(DEFAULT_MAX_SIZE)}; 5 folds of a large ResEnc model are about 2GB)")
    parser.add_argument("--trust-checkpoints", action="store_true",
                        help="nnU-Net zips only: load checkpoints that hold arbitrary Python objects (runs code "
                        "from them)")


def install_options(args: argparse.Namespace) -> InstallOptions:
    return InstallOptions(force=args.force, max_size=parse_size(args.max_size),
                          trust_checkpoints=args.trust_checkpoints)


def report_installed(reporter, stage: str, installed: Installed, **fields: Any) -> None:
    """Log which kind of zip was installed where, and emit the ``done`` event."""
    log.info("Installed %s: %s", installed.description, ", ".join(str(p) for p in installed.folders))
    reporter.emit("done", stage=stage, kind=installed.kind, installed=[str(p) for p in installed.folders], **fields)


def run(args: argparse.Namespace, ctx) -> int:
    installed = install_zip(args.zip, ctx.workspace, install_options(args), ctx.stop)
    report_installed(ctx.reporter, "install-model", installed)
    return 0
