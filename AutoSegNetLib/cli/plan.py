"""``autosegnet plan DATASET [--planner NAME] [--gpu-memory-gb X|auto] [-c CONFIG...]`` -> plans.json."""

from __future__ import annotations

import argparse

from AutoSegNetLib.planning.planners import CONFIGURATIONS, PLANNERS


def gpu_memory(text: str) -> float | str:
    """``auto`` or a positive number of GB (checked again by the planner)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GB or 'auto', got {text!r}") from None


def add_planner_arguments(parser: argparse.ArgumentParser) -> None:
    """``--planner`` and ``--gpu-memory-gb`` (shared with plan-and-preprocess)."""
    parser.add_argument("--planner", default="default", choices=sorted(PLANNERS),
                        help="planner: default = nnU-Net's plain U-Net plans; resenc-m/l/xl = residual encoder "
                        "U-Nets for 8/24/40 GB (default: %(default)s)")
    parser.add_argument("--gpu-memory-gb", type=gpu_memory, default=None, metavar="GB|auto",
                        help="GPU memory to plan for, in GB, or 'auto' for the local GPU "
                        "(default: the planner's target)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset ID (4), folder name (Dataset004_Hippocampus) or name (Hippocampus)")
    add_planner_arguments(parser)
    parser.add_argument("-c", "--configurations", nargs="+", default=None, metavar="CONFIG",
                        help=f"keep only these configurations ({', '.join(CONFIGURATIONS)}; default: every "
                        "warranted one)")


def run(args: argparse.Namespace, ctx) -> int:
    from AutoSegNetLib.planning import plan_experiment

    plan_experiment(ctx.workspace, args.dataset, args.planner, args.gpu_memory_gb, args.configurations, ctx.reporter)
    return 0
