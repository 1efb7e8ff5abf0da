"""``autosegnet export-model -d DATASET -c CONFIG... -o model.zip``: pack trained models into a checked zip.

``--model-folder DIR`` instead of ``-d``/``-c`` packs one model folder given by its path, e.g. a saved version
``versions/<Dataset>/<configuration>/v<NNN>``."""

from __future__ import annotations

import argparse
from pathlib import Path

from AutoSegNetLib.cli.arguments import add_ignored, add_refused
from AutoSegNetLib.cli.nnunet_spellings import add_trainer_option, checkpoint_type
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import CHECKPOINT_KINDS, model_folder_name, parse_model_folder_name
from AutoSegNetLib.models.export import export_model, export_model_folder
from AutoSegNetLib.workspace import Workspace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--dataset", help="dataset id or name (or --model-folder)")
    parser.add_argument("--model-folder", type=Path, help="one model folder to pack instead of -d/-c, e.g. a saved "
                        "version versions/<Dataset>/<configuration>/vNNN")
    parser.add_argument("-c", "--configurations", nargs="+", default=None,
                        help="configurations to export (a cascade stage brings its 3d_lowres along; default: every "
                        "trained configuration)")
    parser.add_argument("-o", "--output", required=True, help="zip file to write")
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="folds (default: every trained fold)")
    parser.add_argument("-p", "--plans", default=None, help="plans name (only if several models share -c)")
    parser.add_argument("--checkpoint", "-chk", type=checkpoint_type(CHECKPOINT_KINDS), choices=CHECKPOINT_KINDS,
                        default="final", help="checkpoint to export: final, best or latest (nnU-Net's "
                        "checkpoint_final.pth etc. work too) (default: %(default)s)")
    parser.add_argument("--description", default="", help="free text stored in the manifest")
    add_trainer_option(parser, for_training=False)
    add_ignored(parser, "--not_strict", nargs=0, reason="the folds and configurations asked for must exist; without "
                "-f every trained fold is exported")
    add_refused(parser, "--exp_cv_preds", nargs=0, message="the zip holds what prediction needs (plans, dataset.json, "
                "checkpoints, postprocessing); copy the cross-validation predictions (fold_K/validation/) separately")


def run(args: argparse.Namespace, ctx) -> int:
    if (args.dataset is None) == (args.model_folder is None):
        raise AutoSegNetError("export-model needs either -d DATASET (with -c CONFIGURATION...) or --model-folder DIR.")
    if args.model_folder is not None:
        if args.configurations or args.plans:
            raise AutoSegNetError("--model-folder packs that one folder: leave out -c and -p.")
        manifest = export_model_folder(args.model_folder, args.output, args.folds, args.checkpoint,
                                       args.description)
    else:
        configurations = args.configurations or trained_configurations(ctx.workspace, args.dataset, args.plans)
        manifest = export_model(ctx.workspace, args.dataset, configurations, args.output, args.folds,
                                args.checkpoint, args.plans, args.description)
    ctx.reporter.emit("done", stage="export-model", output=args.output, models=[m.folder for m in manifest.models],
                      files=len(manifest.files))
    return 0


def trained_configurations(workspace: Workspace, dataset: str, plans: str | None) -> list[str]:
    """The configurations with a model folder in the dataset's results (of plans ``plans`` if given), as
    nnU-Net's export takes them when no ``-c`` is given."""
    results = workspace.results_dataset(dataset)
    found = set()
    for folder in results.glob(model_folder_name("*", "*")):
        parsed = parse_model_folder_name(folder.name)
        if folder.is_dir() and parsed is not None and plans in (None, parsed[0]):
            found.add(parsed[1])
    if not found:
        raise AutoSegNetError(f"No trained model in {results}{f' with plans {plans}' if plans else ''}: train one "
                              "with `autosegnet train` first, or name the configurations with -c.")
    return sorted(found)
