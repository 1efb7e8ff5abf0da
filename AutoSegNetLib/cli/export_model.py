"""``autosegnet export-model -d DATASET -c CONFIG... -o model.zip``: pack trained models into a checked zip."""

from __future__ import annotations

import argparse

from AutoSegNetLib.inference.model_folder import CHECKPOINT_NAMES
from AutoSegNetLib.models.export import export_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name")
    parser.add_argument("-c", "--configurations", nargs="+", required=True,
                        help="configurations to export (a cascade stage brings its 3d_lowres along)")
    parser.add_argument("-o", "--output", required=True, help="zip file to write")
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="folds (default: every trained fold)")
    parser.add_argument("-p", "--plans", default=None, help="plans name (only if several models share -c)")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_NAMES, default="final", help="checkpoint to export")
    parser.add_argument("--description", default="", help="free text stored in the manifest")


def run(args: argparse.Namespace, ctx) -> int:
    manifest = export_model(ctx.workspace, args.dataset, args.configurations, args.output, args.folds,
                            args.checkpoint, args.plans, args.description)  # fmt: skip
    ctx.reporter.emit("done", stage="export-model", output=args.output, models=[m.folder for m in manifest.models],
                      files=len(manifest.files))  # fmt: skip
    return 0
