"""``autosegnet plan DATASET [--planner NAME] [--gpu-memory-gb X|auto] [-c CONFIG...]`` -> plans.json."""

from __future__ import annotations

import argparse

from AutoSegNetLib.cli.arguments import add_dataset_argument, add_ignored, add_refused
from AutoSegNetLib.cli.nnunet_spellings import NO_PROGRESS_BAR, planner_type
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
    """``--planner`` and ``--gpu-memory-gb`` (shared with plan-and-preprocess), with nnU-Net's spellings."""
    parser.add_argument("--planner", "-pl", default="default", choices=sorted(PLANNERS), type=planner_type(PLANNERS),
                        help="planner: default = nnU-Net's plain U-Net plans; resenc-m/l/xl = residual encoder "
                        "U-Nets for 8/24/40 GB; nnU-Net's class names (nnUNetPlannerResEncL, ...) work too "
                        "(default: %(default)s)")
    parser.add_argument("--gpu-memory-gb", "-gpu_memory_target", type=gpu_memory, default=None, metavar="GB|auto",
                        help="GPU memory to plan for, in GB, or 'auto' for the local GPU "
                        "(default: the planner's target)")
    add_refused(parser, "-preprocessor_name", nargs=1, message="AutoSegNet has one preprocessor (nnU-Net's "
                "DefaultPreprocessor); normalisation follows dataset.json's channel names (CT or not)")
    add_refused(parser, "-overwrite_target_spacing", nargs="+", message="no command-line equivalent; register a "
                "planner with another target spacing in Python (AutoSegNetLib.planning.planners.register_planner)")
    add_refused(parser, "-overwrite_plans_name", nargs=1, message="the plans are named after the planner "
                "(nnUNetPlans, nnUNetResEncUNetLPlans, ...) and kept in plans.json; drop -overwrite_plans_name")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser)
    add_planner_arguments(parser)
    parser.add_argument("-c", "--configurations", nargs="+", default=None, metavar="CONFIG",
                        help=f"keep only these configurations ({', '.join(CONFIGURATIONS)}; default: every "
                        "warranted one)")
    add_ignored(parser, "--no_pbar", nargs=0, reason=NO_PROGRESS_BAR)


def run(args: argparse.Namespace, ctx) -> int:
    from AutoSegNetLib.planning import plan_experiment

    plan_experiment(ctx.workspace, args.dataset, args.planner, args.gpu_memory_gb, args.configurations, ctx.reporter)
    return 0
