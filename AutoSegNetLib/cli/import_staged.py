"""``autosegnet import-staged STAGING``: turn cases staged by the Slicer module into the raw dataset.

``STAGING`` holds ``export.json`` and the staged arrays (see :mod:`AutoSegNetLib.dataset.staged`); the dataset
folder it names is written under the workspace's ``raw/``. ``--report FILE.json`` writes what was done
(written / unchanged / removed cases, warnings, case hashes) for the caller to show.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("staging", type=Path, help="staging folder (with export.json), e.g. "
                        "<workspace>/jobs/staging/Dataset501_SlicerCases")
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="write what was done to this JSON file")


def run(args: argparse.Namespace, ctx) -> int:
    from AutoSegNetLib.dataset.import_staged import import_staged

    report = import_staged(args.staging, ctx.workspace.raw, ctx.reporter)
    if args.report:
        report.save(args.report)
        log.info("Report written to %s", args.report)
    return 0
