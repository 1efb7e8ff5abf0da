"""``autosegnet preprocess DATASET -c CONFIG... [-np N]``: crop, normalise and resample the training cases.

Stopped on request (``--stop-file``): between cases, exit status 0 and a ``done`` event with
``status="stopped"``; the configuration folders stay marked incomplete until a rerun finishes them.
"""

from __future__ import annotations

import argparse
import logging
import os

from AutoSegNetLib.cli.arguments import add_dataset_argument, add_ignored
from AutoSegNetLib.cli.nnunet_spellings import NO_PROGRESS_BAR
from AutoSegNetLib.layout import PLANS_FILE, PLANS_FILE_STEM
from AutoSegNetLib.planning.plans import Plans
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)


def default_num_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser)
    parser.add_argument("-c", "--configurations", nargs="+", default=None, metavar="CONFIG",
                        help="configurations to preprocess (default: every planned configuration)")
    parser.add_argument("-np", "--num-workers", type=int, default=default_num_workers(),
                        help="worker processes, one case each (default: %(default)s)")
    parser.add_argument("--plans-name", "-plans_name", default=PLANS_FILE_STEM,
                        help="plans file name without .json, or the plans identifier inside plans.json as nnU-Net "
                        "names it (nnUNetPlans) (default: plans)")
    add_ignored(parser, "--no_pbar", nargs=0, reason=NO_PROGRESS_BAR)


def run(args: argparse.Namespace, ctx) -> int:
    from AutoSegNetLib.preprocessing import preprocess_dataset

    args.plans_name = plans_file_stem(ctx.workspace, args.dataset, args.plans_name)
    configurations = args.configurations
    if configurations is None:
        plans_path = ctx.workspace.preprocessed_dataset(args.dataset) / f"{args.plans_name}.json"
        configurations = list(Plans.load(plans_path).configurations) if plans_path.is_file() else []
    summary = preprocess_dataset(ctx.workspace, args.dataset, configurations, args.num_workers, ctx.reporter,
                                 args.plans_name, stop=ctx.stop)
    for conf, entry in summary.items():
        if isinstance(entry, dict):
            log.info("%s: %d cases, %d preprocessed, %d up to date, %d removed -> %s", conf, entry["cases"],
                     len(entry["preprocessed"]), entry["unchanged"], len(entry["removed"]), entry["folder"])
    if summary["stopped"]:
        report_stopped_preprocessing(ctx.reporter, "preprocess", summary)
        return 0
    ctx.reporter.emit("done", stage="preprocess", seconds=summary["seconds"])
    return 0


def plans_file_stem(workspace: Workspace, dataset: str, name: str) -> str:
    """The plans file (without .json) that ``--plans-name name`` means: ``name.json`` if it exists, else
    ``plans`` when plans.json holds the plans identifier ``name`` (nnU-Net's ``-plans_name nnUNetPlans``)."""
    if name == PLANS_FILE_STEM:
        return name
    folder = workspace.preprocessed_dataset(dataset)
    if (folder / f"{name}.json").is_file() or not (folder / PLANS_FILE).is_file():
        return name
    return PLANS_FILE_STEM if Plans.load(folder / PLANS_FILE).plans_name == name else name


def report_stopped_preprocessing(reporter, stage: str, summary: dict) -> None:
    """Log and emit the ``done`` event (``status="stopped"``) of a preprocessing run cut short by a stop request."""
    log.warning("%s: STOPPED on request between cases. The cases written are kept; the configuration folders are "
                "marked incomplete (training refuses them) until the same command is run again, which only does "
                "the missing cases.", stage)
    reporter.emit("done", stage=stage, status="stopped", seconds=summary["seconds"],
                  preprocessed={c: len(e["preprocessed"]) for c, e in summary.items() if isinstance(e, dict)})
