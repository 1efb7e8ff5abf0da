"""``autosegnet plan-and-preprocess DATASET [-c CONFIG...] [-np N] [--verify] [--planner NAME]``.

Runs, in order: verify (with ``--verify``), fingerprint, plan (every warranted configuration) -- through
:func:`~AutoSegNetLib.planning.plan_dataset.plan_dataset`, which reuses them when the raw dataset and these
settings did not change since the last run -- then preprocess (the ``-c`` configurations, default all planned).
Stopped on request (``--stop-file``): between cases and between stages, exit status 0 and a ``done`` event with
``status="stopped"``; a stopped verify or fingerprint writes nothing (the next run redoes them), a stopped
preprocess keeps its cases as ``preprocess`` does.

Without ``--verify`` the checks of ``verify`` that cost nothing next to the stages still run and refuse the dataset,
naming the case and file: file layout and numTraining before the fingerprint, image/label geometry and NaN/Inf
voxels as each case is read. A second run preprocessing the same configuration meanwhile is refused (a lock).
"""

from __future__ import annotations

import argparse
import logging

from AutoSegNetLib.cli.arguments import add_dataset_argument, add_ignored, add_refused
from AutoSegNetLib.cli.fingerprint import add_fingerprint_spellings, default_num_workers
from AutoSegNetLib.cli.nnunet_spellings import NO_PROGRESS_BAR
from AutoSegNetLib.cli.plan import add_planner_arguments
from AutoSegNetLib.cli.preprocess import report_stopped_preprocessing

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser)
    parser.add_argument("-c", "--configurations", nargs="+", default=None, metavar="CONFIG",
                        help="configurations to preprocess (default: every planned configuration)")
    parser.add_argument("-np", "--num-workers", type=int, default=default_num_workers(),
                        help="worker processes for every stage, one case each (default: %(default)s)")
    parser.add_argument("--verify", "--verify_dataset_integrity", action="store_true",
                        help="check the raw dataset's integrity first")
    add_planner_arguments(parser)
    add_fingerprint_spellings(parser)
    add_ignored(parser, "-npfp", nargs=1, reason="-np sets the worker processes of every stage, the fingerprint's "
                "too")
    add_ignored(parser, "--no_pbar", nargs=0, reason=NO_PROGRESS_BAR)
    add_refused(parser, "--no_pp", nargs=0, message="to plan without preprocessing run `autosegnet fingerprint "
                "DATASET` and then `autosegnet plan DATASET`")


def run(args: argparse.Namespace, ctx) -> int:
    from AutoSegNetLib.planning.plan_dataset import PlanSettings, plan_dataset
    from AutoSegNetLib.preprocessing import preprocess_dataset

    settings = PlanSettings(verify=bool(args.verify), planner=args.planner, gpu_memory_gb=args.gpu_memory_gb,
                            num_workers=args.num_workers)
    planned = plan_dataset(ctx.workspace, args.dataset, settings, ctx.reporter, ctx.stop)
    if planned.plans is None:
        log.error("verify: %d error(s) in %s; fix them (see `autosegnet verify %s`) before planning.",
                  len(planned.verification.errors), args.dataset, args.dataset)
        return 1
    ctx.stop.raise_if_requested("stopped before preprocessing")
    configurations = args.configurations or list(planned.plans.configurations)
    summary = preprocess_dataset(ctx.workspace, args.dataset, configurations, args.num_workers, ctx.reporter,
                                 stop=ctx.stop)
    if summary["stopped"]:
        report_stopped_preprocessing(ctx.reporter, "plan-and-preprocess", summary)
    return 0
