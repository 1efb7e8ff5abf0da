"""``autosegnet find-best -d DATASET``: rank configurations and 2-way ensembles on cross-validation."""

from __future__ import annotations

import argparse
import sys

from AutoSegNetLib.cli.arguments import add_dataset_argument, add_ignored
from AutoSegNetLib.cli.nnunet_spellings import add_trainer_option
from AutoSegNetLib.evaluation.crossval import DEFAULT_FOLDS
from AutoSegNetLib.evaluation.find_best import find_best_configuration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser, "dataset id or name")
    parser.add_argument("-c", "--configurations", nargs="+", default=None,
                        help="configurations to compare (default: every trained one)")
    parser.add_argument("-p", "--plans", default=None, help="plans name (default: any)")
    parser.add_argument("-f", "--folds", nargs="+", default=list(DEFAULT_FOLDS), help="folds (default 0-4)")
    parser.add_argument("--no-ensembles", "--disable_ensembling", action="store_true",
                        help="compare single configurations only")
    parser.add_argument("-np", "--num-workers", type=int, default=1, help="worker processes (default 1)")
    add_trainer_option(parser, for_training=False, nargs="+")
    add_ignored(parser, "--no_overwrite", nargs=0, reason="find-best evaluates the current cross-validation "
                "predictions every time")


def run(args: argparse.Namespace, ctx) -> int:
    info = find_best_configuration(ctx.workspace, args.dataset, args.configurations, args.plans, args.folds,
                                   not args.no_ensembles, args.num_workers, ctx.reporter)
    lines = ["Cross-validation (mean foreground Dice):"]
    lines += [f"  {item['foreground_dice']:.4f}  {item['name']}" for item in info["ranking"]]
    lines += [f"Best: {info['best']['name']}. Postprocessing: {info['postprocessing']['steps'] or 'none'}.",
              "Predict with:"]
    lines += [f"  {command}" for command in info["commands"]]
    if ctx.reporter.mode == "json":
        ctx.reporter.emit("done", stage="find-best", **info)
    else:
        sys.stdout.write("\n".join(lines) + "\n")
    return 0
