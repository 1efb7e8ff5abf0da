"""``autosegnet import-nnunet MODEL_FOLDER``: convert an nnU-Net v2 model folder for prediction here."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.models.nnunet_import import import_nnunet_model
from AutoSegNetLib.utils.atomic import read_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_folder", help="nnU-Net v2 model folder, e.g. .../nnUNetTrainer__nnUNetPlans__3d_fullres")
    parser.add_argument("-c", "--configuration", default=None, help="configuration (default: from the folder name)")
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="folds to import (default: all)")
    parser.add_argument("--checkpoint", default="final", choices=("final", "best"), help="checkpoint to import")
    parser.add_argument("-o", "--output", default=None,
                        help="results folder of the dataset to write into (default: the workspace's "
                        "results/<dataset_name>/)")
    parser.add_argument("--trust-checkpoints", action="store_true",
                        help="load checkpoints that hold arbitrary Python objects (runs code from them)")
    parser.add_argument("--force", action="store_true", help="replace an earlier import")


def run(args: argparse.Namespace, ctx) -> int:
    output = Path(args.output) if args.output else None
    if output is None:
        dataset_name = read_json(Path(args.model_folder) / "plans.json").get("dataset_name")
        if not isinstance(dataset_name, str) or not re.fullmatch(r"Dataset\d{3}_[A-Za-z0-9_\-]+", dataset_name):
            raise AutoSegNetError(
                f"plans.json of {args.model_folder} names dataset {dataset_name!r}, not DatasetXXX_Name; pass -o."
            )
        output = ctx.workspace.results / dataset_name
    folder = import_nnunet_model(args.model_folder, output, args.configuration, args.folds, args.checkpoint,
                                 args.trust_checkpoints, args.force)
    ctx.reporter.emit("done", stage="import-nnunet", model_folder=str(folder))
    return 0
