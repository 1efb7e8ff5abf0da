"""``autosegnet ensemble -i FOLDER FOLDER ... -o OUT [--vote soft|hard]``: combine prediction folders.

``--vote soft`` (default) averages the stored probabilities (folders predicted with ``--save-probabilities``);
``--vote hard`` is a majority vote of the label maps, a tie going to the lowest tied label value.
"""

from __future__ import annotations

import argparse

from AutoSegNetLib.cli.arguments import add_ignored
from AutoSegNetLib.cli.nnunet_spellings import ONE_PROCESS
from AutoSegNetLib.inference.ensemble import VOTES, ensemble_folders


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", nargs="+", required=True,
                        help="prediction folders made with `autosegnet predict --save-probabilities` (any prediction "
                        "folders for --vote hard)")
    parser.add_argument("-o", "--output", required=True, help="output folder for the ensembled label maps")
    parser.add_argument("--save-probabilities", "--save_npz", action="store_true",
                        help="also write the averaged probabilities (--vote soft)")
    parser.add_argument("--vote", choices=VOTES, default="soft",
                        help="soft: average the probabilities (nnU-Net's way); hard: majority vote of the label maps, "
                        "a tie going to the lowest tied label value (default: %(default)s)")
    add_ignored(parser, "-np", nargs=1, reason=ONE_PROCESS)


def run(args: argparse.Namespace, ctx) -> int:
    written = ensemble_folders(args.input, args.output, args.save_probabilities, ctx.reporter, vote=args.vote)
    ctx.reporter.emit("done", stage="ensemble", cases=len(written), output=args.output)
    return 0
