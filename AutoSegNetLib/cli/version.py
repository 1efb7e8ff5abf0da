"""``autosegnet version save|prepare DATASET CONFIGURATION``: the model versions of the annotate-correct-retrain loop.

- ``save``: copy what prediction needs from the working model folder
  (``results/<dataset>/AutoSegNet__<plans>__<configuration>``) into the next ``versions/<dataset>/<configuration>/
  v<NNN>`` (the module runs it after each finished training);
- ``prepare --fold F``: empty the working fold folder before fine-tuning writes into it, saving a training there
  that no version holds yet first (the module runs it before a retraining).

Versions live in ``<workspace>/versions`` (beside ``results/``). Runs where the results are: on this computer,
or as a job on an ``autosegnet serve`` server.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("save", "prepare"), help="save a version, or prepare fine-tuning")
    parser.add_argument("dataset", help="dataset folder name, e.g. Dataset501_SlicerCases")
    parser.add_argument("configuration", help="the configuration trained, e.g. 3d_fullres")
    parser.add_argument("--fold", default="all", help="the fold to prepare (default: %(default)s)")
    parser.add_argument("--based-on", type=Path, metavar="CHECKPOINT", help="save: the checkpoint fine-tuned from")
    parser.add_argument("--note", default="", help="save: free text kept in version.json")


def run(args: argparse.Namespace, ctx) -> int:
    from AutoSegNetLib.models import versions

    results = ctx.workspace.results / args.dataset
    versions_root = ctx.workspace.results.parent / "versions"
    working = versions.working_model_folder(results, args.configuration)
    if working is None:
        if args.action == "prepare":
            log.info("No working model folder in %s yet: nothing to prepare.", results)
            ctx.reporter.emit("done", stage="version", message="nothing to prepare")
            return 0
        raise AutoSegNetError(f"No trained {args.configuration} model in {results}; train it first.")
    if args.action == "save":
        model = versions.version_holding(working, versions_root)
        if model is not None:  # e.g. a re-attached training whose chain saved it already
            log.info("%s already holds this training; no new version saved.", model.version)
        else:
            model = versions.snapshot_version(working, versions_root, args.dataset, args.configuration,
                                              args.based_on, args.note)
        ctx.reporter.emit("done", stage="version", version=model.version, folder=str(model.folder))
    else:
        versions.prepare_for_finetuning(working, args.fold, versions_root, args.dataset, args.configuration)
        ctx.reporter.emit("done", stage="version", message=f"fold {args.fold} ready for fine-tuning")
    return 0
