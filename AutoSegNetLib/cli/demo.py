"""``autosegnet demo``: run the whole pipeline on the built-in synthetic dataset (no download)."""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    parser.add_argument("--iterations", type=int, default=20, help="training iterations per epoch (default 20)")
    parser.add_argument("--cases", type=int, default=12, help="synthetic training cases (default 12)")
    parser.add_argument("-np", "--num-workers", type=int, default=2, help="worker processes for data stages")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])


def run(args: argparse.Namespace, ctx) -> int:
    from AutoSegNetLib.demo.pipeline import DemoSettings, run_demo

    settings = DemoSettings(num_cases=args.cases, epochs=args.epochs, iterations_per_epoch=args.iterations,
                            num_workers=args.num_workers, device=args.device)
    result = run_demo(ctx.workspace, settings, ctx.reporter)
    if args.progress != "json":
        log.info("Demo finished. Timings (s): %s", json.dumps(result["timings_s"]))
        log.info("Dice on %d held-out synthetic cases: %s", settings.num_test_cases, json.dumps(result["test_dice"]))
        log.info("Model folder: %s", result["model_folder"])
    return 0
