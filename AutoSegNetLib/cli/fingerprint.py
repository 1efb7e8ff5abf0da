"""``autosegnet fingerprint DATASET [-np N]``: spacings, shapes and foreground intensities -> fingerprint.json."""

from __future__ import annotations

import argparse
import logging
import os

from AutoSegNetLib.cli.arguments import add_dataset_argument, add_ignored, add_refused
from AutoSegNetLib.cli.nnunet_spellings import NO_PROGRESS_BAR

log = logging.getLogger(__name__)


def default_num_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser)
    parser.add_argument("-np", "--num-workers", type=int, default=default_num_workers(),
                        help="worker processes, one case in memory each (default: %(default)s)")
    add_fingerprint_spellings(parser)
    add_ignored(parser, "--no_pbar", nargs=0, reason=NO_PROGRESS_BAR)
    add_refused(parser, "--verify_dataset_integrity", nargs=0, message="run `autosegnet verify DATASET` first, or "
                "`autosegnet plan-and-preprocess DATASET --verify`, which verifies before the fingerprint")


def add_fingerprint_spellings(parser: argparse.ArgumentParser) -> None:
    """nnU-Net's fingerprint options (``nnUNetv2_extract_fingerprint``, ``nnUNetv2_plan_and_preprocess``)."""
    add_refused(parser, "-fpe", nargs=1, message="AutoSegNet has one fingerprint extractor (nnU-Net's "
                "DatasetFingerprintExtractor); drop -fpe")
    add_ignored(parser, "--clean", nargs=0, reason="the fingerprint is extracted anew whenever the raw dataset "
                "changed")


def run(args: argparse.Namespace, ctx) -> int:
    from AutoSegNetLib.fingerprint import extract_fingerprint

    fingerprint = extract_fingerprint(ctx.workspace, args.dataset, args.num_workers, ctx.reporter, stop=ctx.stop)
    for channel, stats in fingerprint.foreground_intensity_properties.items():
        log.info("channel %s foreground: mean %.4g, std %.4g, 0.5-99.5%% [%.4g, %.4g]", channel, stats.mean,
                 stats.std, stats.percentile_00_5, stats.percentile_99_5)
    return 0
