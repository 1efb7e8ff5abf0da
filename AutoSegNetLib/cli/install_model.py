"""``autosegnet install-model model.zip``: check a model zip (manifest, hashes, paths) and install it."""

from __future__ import annotations

import argparse

from AutoSegNetLib.models.install import install_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("zip", help="a zip made by `autosegnet export-model`")
    parser.add_argument("--force", action="store_true", help="replace model folders that are installed already")


def run(args: argparse.Namespace, ctx) -> int:
    installed = install_model(args.zip, ctx.workspace, force=args.force)
    ctx.reporter.emit("done", stage="install-model", installed=[str(p) for p in installed])
    return 0
