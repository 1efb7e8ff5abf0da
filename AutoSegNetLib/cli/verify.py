"""``autosegnet verify DATASET``: report every integrity problem of a raw dataset.

Exit status: 0 when there is no error (warnings allowed), 1 when errors were found, 2 when the dataset
cannot be found. ``--report FILE.json`` writes all problems as JSON. Stopped on request (``--stop-file``): exit
status 0, a ``done`` event with ``status="stopped"``, no verdict and no report file.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from AutoSegNetLib.cli.arguments import add_dataset_argument
from AutoSegNetLib.dataset.problems import DEFAULT_TOLERANCE, ERROR
from AutoSegNetLib.dataset.verify import verify_dataset

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser, "dataset ID or name (4, Dataset004_Hippocampus, Hippocampus) or a folder")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="geometry tolerance: relative for spacing, absolute for direction cosines, mm for the "
                        "origin (at least 1/1000 voxel) (default: %(default)g)")
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="write every problem to this JSON file")
    parser.add_argument("-np", "--num-workers", type=int, default=4, help="worker processes, one case each "
                        "(default: %(default)s)")


def run(args: argparse.Namespace, ctx) -> int:
    path = Path(args.dataset)
    folder = path if (path / "dataset.json").is_file() else ctx.workspace.raw_dataset(args.dataset)
    report = verify_dataset(folder, tolerance=args.tolerance, num_workers=args.num_workers, reporter=ctx.reporter,
                            stop=ctx.stop)
    for found in report.problems:
        (log.error if found.severity == ERROR else log.warning)("%s", found)
    if not report.complete:
        log.warning("verify %s: STOPPED on request after %d of %d cases — no verdict%s. Run it again to check "
                    "every case.", folder.name, report.checked_cases, report.num_training_cases + report.num_test_cases,
                    f"; {args.report} not written" if args.report else "")
        return 0
    if args.report:
        report.save(args.report)
        log.info("Report written to %s", args.report)
    verdict = "OK" if report.ok else "FAILED"
    log.info("verify %s: %s — %d training and %d test cases, %d errors, %d warnings.", folder.name, verdict,
             report.num_training_cases, report.num_test_cases, len(report.errors), len(report.warnings))
    return 0 if report.ok else 1
