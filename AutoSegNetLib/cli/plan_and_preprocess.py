"""``autosegnet plan-and-preprocess DATASET [-c CONFIG...] [-np N] [--verify] [--planner NAME]``.

Runs, in order: verify (with ``--verify``), fingerprint, plan (every warranted configuration), preprocess
(the ``-c`` configurations, default all planned). Stopped on request (``--stop-file``): between cases and
between stages, exit status 0 and a ``done`` event with ``status="stopped"``; a stopped verify or fingerprint
writes nothing (the next run redoes them), a stopped preprocess keeps its cases as ``preprocess`` does.

Without ``--verify`` the checks of ``verify`` that cost nothing next to the stages still run and refuse the dataset,
naming the case and file: file layout and numTraining before the fingerprint, image/label geometry and NaN/Inf
voxels as each case is read. A second run preprocessing the same configuration meanwhile is refused (a lock).
"""

from __future__ import annotations

import argparse
import importlib
import logging

from AutoSegNetLib.cli.arguments import add_dataset_argument, add_ignored, add_refused
from AutoSegNetLib.cli.fingerprint import add_fingerprint_spellings, default_num_workers
from AutoSegNetLib.cli.nnunet_spellings import NO_PROGRESS_BAR
from AutoSegNetLib.cli.plan import add_planner_arguments
from AutoSegNetLib.cli.preprocess import report_stopped_preprocessing
from AutoSegNetLib.utils.stop import StopRequested

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
    from AutoSegNetLib.planning.chain_cache import chain_key, is_up_to_date, remember
    from AutoSegNetLib.planning.plans import Plans

    name = ctx.workspace.resolve_dataset(args.dataset)
    preprocessed = ctx.workspace.preprocessed / name
    key = chain_key(ctx.workspace.raw / name, {"verify": bool(args.verify), "planner": args.planner,
                                                "gpu_memory_gb": args.gpu_memory_gb})
    if args.gpu_memory_gb != "auto" and is_up_to_date(preprocessed, key):  # "auto" may see another GPU
        log.info("Raw dataset and planning settings unchanged since the last run: reusing its verification, "
                 "fingerprint and plans (%s).", preprocessed / "plans.json")
        plans = Plans.load(preprocessed / "plans.json")
    else:
        plans = _verify_fingerprint_plan(args, ctx)
        if plans is None:
            return 1
        remember(preprocessed, key)
    ctx.stop.raise_if_requested("stopped before preprocessing")
    preprocess = _optional("AutoSegNetLib.preprocessing", "preprocess_dataset")
    if preprocess is None:
        log.error("Fingerprint and plans are written, but preprocessing is not built yet in this version; "
                  "nothing was preprocessed.")
        return 2
    configurations = args.configurations or list(plans.configurations)
    summary = preprocess(ctx.workspace, args.dataset, configurations, args.num_workers, ctx.reporter, stop=ctx.stop)
    if summary["stopped"]:
        report_stopped_preprocessing(ctx.reporter, "plan-and-preprocess", summary)
    return 0


def _verify_fingerprint_plan(args: argparse.Namespace, ctx):
    """Run verify (if asked), fingerprint and plan; returns the plans, or None when verify found errors."""
    from AutoSegNetLib.fingerprint import extract_fingerprint
    from AutoSegNetLib.planning import plan_experiment

    if args.verify and not _verify(args, ctx):
        return None
    extract_fingerprint(ctx.workspace, args.dataset, args.num_workers, ctx.reporter, stop=ctx.stop)
    ctx.stop.raise_if_requested("stopped before planning")
    return plan_experiment(ctx.workspace, args.dataset, args.planner, args.gpu_memory_gb, None, ctx.reporter)


def _verify(args: argparse.Namespace, ctx) -> bool:
    verify = _optional("AutoSegNetLib.dataset.verify", "verify_dataset")
    if verify is None:
        log.warning("--verify: dataset verification is not built yet in this version; skipping it.")
        return True
    report = verify(ctx.workspace.raw_dataset(args.dataset), num_workers=args.num_workers, reporter=ctx.reporter,
                    stop=ctx.stop)
    if not report.complete:
        raise StopRequested(f"verify stopped after {report.checked_cases} of "
                            f"{report.num_training_cases + report.num_test_cases} cases; nothing was planned")
    for problem in report.problems:
        log.warning("%s", problem)
    if not report.ok:
        log.error("verify: %d error(s) in %s; fix them (see `autosegnet verify %s`) before planning.",
                  len(report.errors), args.dataset, args.dataset)
    return report.ok


def _optional(module: str, name: str):
    """``module.name``, or None when that stage is not built (its module does not exist)."""
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name and (module.startswith(exc.name) or exc.name.startswith(module)):
            return None
        raise
    except AttributeError:
        return None
