"""``autosegnet fingerprint DATASET [-np N]``: spacings, shapes and foreground intensities -> fingerprint.json."""

from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger(__name__)


def default_num_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset ID (4), folder name (Dataset004_Hippocampus) or name (Hippocampus)")
    parser.add_argument("-np", "--num-workers", type=int, default=default_num_workers(),
                        help="worker processes, one case in memory each (default: %(default)s)")


def run(args: argparse.Namespace, ctx) -> int:
    from AutoSegNetLib.fingerprint import extract_fingerprint

    fingerprint = extract_fingerprint(ctx.workspace, args.dataset, args.num_workers, ctx.reporter, stop=ctx.stop)
    for channel, stats in fingerprint.foreground_intensity_properties.items():
        log.info("channel %s foreground: mean %.4g, std %.4g, 0.5-99.5%% [%.4g, %.4g]", channel, stats.mean,
                 stats.std, stats.percentile_00_5, stats.percentile_99_5)
    return 0
