"""``autosegnet ensemble -i FOLDER FOLDER ... -o OUT``: average stored probabilities, write label maps."""

from __future__ import annotations

import argparse

from AutoSegNetLib.inference.ensemble import ensemble_folders


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", nargs="+", required=True,
                        help="prediction folders made with `autosegnet predict --save-probabilities`")
    parser.add_argument("-o", "--output", required=True, help="output folder for the ensembled label maps")
    parser.add_argument("--save-probabilities", action="store_true", help="also write the averaged probabilities")


def run(args: argparse.Namespace, ctx) -> int:
    written = ensemble_folders(args.input, args.output, args.save_probabilities, ctx.reporter)
    ctx.reporter.emit("done", stage="ensemble", cases=len(written), output=args.output)
    return 0
