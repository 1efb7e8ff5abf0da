"""``autosegnet postprocess determine|apply``: largest-connected-component rules from cross-validation."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from AutoSegNetLib.cli import _add_common_options
from AutoSegNetLib.cli.arguments import add_ignored, add_refused
from AutoSegNetLib.cli.nnunet_spellings import ONE_PROCESS
from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation.crossval import DEFAULT_FOLDS, crossval_pairs, reference_files
from AutoSegNetLib.evaluation.evaluate import LabelSet, pair_folders
from AutoSegNetLib.inference.model_folder import ModelFolder, find_model_folder
from AutoSegNetLib.layout import POSTPROCESSING_FILE
from AutoSegNetLib.postprocessing.determine import determine_postprocessing
from AutoSegNetLib.postprocessing.folder import apply_to_folder
from AutoSegNetLib.utils.atomic import read_json, write_json

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    determine = sub.add_parser("determine", help="decide the rules from cross-validation predictions")
    _model_options(determine)
    determine.add_argument("-f", "--folds", nargs="+", default=list(DEFAULT_FOLDS), help="folds (default 0-4)")
    determine.add_argument("--predictions", "-i", help="instead of a model: a folder of predictions ...")
    determine.add_argument("--references", "-ref", help="... and the folder of their reference label maps")
    determine.add_argument("--dataset-json", "-dataset_json", help="labels for --predictions/--references")
    determine.add_argument("-o", "--output", help="rules file (default: the model folder's postprocessing.json)")
    determine.add_argument("-np", "--num-workers", type=int, default=1, help="worker processes (default 1)")
    add_ignored(determine, "-plans_json", nargs=1, reason="the rules need only the labels (--dataset-json)")
    add_ignored(determine, "--remove_postprocessed", nargs=0, reason="determine writes only the rules file, no "
                "postprocessed predictions")
    apply = sub.add_parser("apply", help="apply rules to a folder of label maps")
    apply.add_argument("-i", "--input", required=True, help="folder of label maps")
    apply.add_argument("-o", "--output", required=True, help="output folder")
    apply.add_argument("--rules", help="postprocessing.json (or give the model with -d/-c)")
    _model_options(apply)
    add_refused(apply, "-pp_pkl_file", "--pp_pkl_file", nargs=1, message="AutoSegNet never opens nnU-Net's pickled "
                "rules; pass --rules postprocessing.json as written by `autosegnet postprocess determine` or "
                "`autosegnet find-best` (or give the model with -d DATASET -c CONFIGURATION)")
    add_ignored(apply, "-plans_json", "-dataset_json", nargs=1, reason="the rules file holds all that applying "
                "them needs")
    add_ignored(apply, "-np", nargs=1, reason=ONE_PROCESS)


def _model_options(parser: argparse.ArgumentParser) -> None:
    _add_common_options(parser, defaults=False)  # --workspace etc. also after the action
    parser.add_argument("-d", "--dataset", help="dataset id or name")
    parser.add_argument("-c", "--configuration", help="configuration of the model")
    parser.add_argument("-p", "--plans", default=None, help="plans name (only if several models share -c)")
    parser.add_argument("--model-folder", help="model folder instead of -d/-c")


def run(args: argparse.Namespace, ctx) -> int:
    return _determine(args, ctx) if args.action == "determine" else _apply(args, ctx)


def _determine(args: argparse.Namespace, ctx) -> int:
    if args.predictions or args.references:
        if not (args.predictions and args.references and args.dataset_json and args.output):
            raise AutoSegNetError("--predictions needs --references, --dataset-json and -o as well.")
        pairs = pair_folders(Path(args.references), Path(args.predictions))
        labels = LabelSet.from_dataset_json(DatasetJson.load(args.dataset_json))
        output = Path(args.output)
    else:
        folder = _model_folder(args, ctx)
        model = ModelFolder.open(folder)
        dataset = args.dataset or model.plans.dataset_name
        references = reference_files(ctx.workspace.raw_dataset(dataset))
        pairs = crossval_pairs(folder, [str(f) for f in args.folds], references, model.dataset_json.file_ending)
        labels = LabelSet.from_dataset_json(model.dataset_json)
        output = Path(args.output) if args.output else folder / POSTPROCESSING_FILE
    rules = determine_postprocessing(pairs, labels, args.num_workers)
    write_json(output, rules)
    log.info("Postprocessing steps: %s (foreground Dice %.4f -> %.4f); written to %s", rules["steps"] or "none",
             rules["dice_before"]["foreground_mean"], rules["dice_after"]["foreground_mean"], output)
    ctx.reporter.emit("done", stage="postprocess", steps=rules["steps"], output=str(output))
    return 0


def _apply(args: argparse.Namespace, ctx) -> int:
    if args.rules:
        rules = read_json(args.rules)
    else:
        path = Path(_model_folder(args, ctx)) / POSTPROCESSING_FILE
        if not path.is_file():
            raise AutoSegNetError(f"{path} does not exist; run `autosegnet postprocess determine` first.")
        rules = read_json(path)
    written = apply_to_folder(args.input, args.output, rules)
    ctx.reporter.emit("done", stage="postprocess", cases=len(written), output=args.output)
    return 0


def _model_folder(args: argparse.Namespace, ctx) -> Path:
    if args.model_folder:
        return Path(args.model_folder)
    if not args.dataset or not args.configuration:
        raise AutoSegNetError("Say which model: -d DATASET -c CONFIGURATION, or --model-folder DIR (or --rules).")
    return find_model_folder(ctx.workspace, args.dataset, args.configuration, args.plans)
