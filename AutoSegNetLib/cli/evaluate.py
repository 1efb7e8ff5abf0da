"""``autosegnet evaluate REF PRED``: Dice, IoU, TP/FP/FN/TN, HD95 and ASSD per case and label -> summary.json."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from AutoSegNetLib.cli.arguments import Slot, add_ignored, add_positional_or_flag, add_refused
from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.evaluation.evaluate import evaluate_folders, labels_for

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_positional_or_flag(
        parser, [Slot("reference", "-ref", "REF"), Slot("prediction", "-pred", "PRED")],
        ["folder with reference label maps <case><ending>", "folder with predicted label maps <case><ending>"],
        [("-ref", "--reference"), ("-pred", "--prediction")],
    )
    parser.add_argument("-l", "--labels", type=int, nargs="+", default=None,
                        help="label values to evaluate (default: the foreground labels of --dataset-json)")
    parser.add_argument("--dataset-json", "-djfile", default=None,
                        help="dataset.json giving labels, names, regions and the ignore label "
                        "(default: PRED/dataset.json or REF/../dataset.json if present)")
    parser.add_argument("--regions", action="store_true", help="evaluate the regions defined in dataset.json")
    parser.add_argument("-o", "--output", default=None, help="summary file (default: PRED/summary.json)")
    parser.add_argument("--no-distances", action="store_true", help="skip HD95 and ASSD (faster)")
    parser.add_argument("-np", "--num-workers", type=int, default=1, help="worker processes (default 1)")
    add_ignored(parser, "-pfile", nargs=1, reason="the labels come from dataset.json (--dataset-json/-djfile); the "
                "plans are not needed")
    add_ignored(parser, "--chill", nargs=0, reason="the predictions present are evaluated; references without a "
                "prediction are never an error")
    add_refused(parser, "-il", nargs=1, message="give the ignore label in dataset.json (\"labels\": {\"ignore\": N}) "
                "and pass it with --dataset-json")


def run(args: argparse.Namespace, ctx) -> int:
    dataset_json = _dataset_json(args)
    labels = labels_for(dataset_json, args.labels, args.regions)
    summary = evaluate_folders(args.reference, args.prediction, labels, args.output, distances=not args.no_distances,
                               num_workers=args.num_workers, reporter=ctx.reporter)
    for key, name in summary["labels"].items():
        metrics = summary["mean"][key]
        text = ", ".join(f"{m} {metrics[m]:.4g}" for m in ("Dice", "IoU", "HD95", "ASSD") if m in metrics)
        log.info("%s (%s): %s", name, key, text)
    log.info("mean foreground Dice: %.4f over %d cases", summary["foreground_mean"]["Dice"], summary["num_cases"])
    ctx.reporter.emit("done", stage="evaluate", dice=summary["foreground_mean"]["Dice"], cases=summary["num_cases"])
    return 0


def _dataset_json(args: argparse.Namespace) -> DatasetJson | None:
    if args.dataset_json:
        return DatasetJson.load(args.dataset_json)
    for candidate in (Path(args.prediction) / "dataset.json", Path(args.reference).parent / "dataset.json"):
        if candidate.is_file():
            return DatasetJson.load(candidate)
    return None
