"""``autosegnet install-model model.zip``: check a model zip (manifest, hashes, paths) and install it.

Stopped on request (``--stop-file``) before or while unpacking: nothing is installed, exit status 0 and a
``done`` event with ``status="stopped"``. ``--max-size`` caps the unpacked size (default 16GB; see
:data:`AutoSegNetLib.models.install.DEFAULT_MAX_SIZE`).
"""

from __future__ import annotations

import argparse

from AutoSegNetLib.models.install import DEFAULT_MAX_SIZE, format_size, install_model, parse_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("zip", help="a zip made by `autosegnet export-model`")
    parser.add_argument("--force", action="store_true", help="replace model folders that are installed already")
    parser.add_argument("--max-size", default=format_size(DEFAULT_MAX_SIZE), metavar="SIZE",
                        help="refuse zips that unpack to more than this, e.g. 8GB, 500MB, 2GiB (default "
                        f"{format_size(DEFAULT_MAX_SIZE)}; 5 folds of a large ResEnc model are about 2GB)")


def run(args: argparse.Namespace, ctx) -> int:
    installed = install_model(args.zip, ctx.workspace, force=args.force, stop=ctx.stop,
                              max_size=parse_size(args.max_size))
    ctx.reporter.emit("done", stage="install-model", installed=[str(p) for p in installed])
    return 0
