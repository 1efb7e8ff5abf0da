"""``autosegnet predict``: segment a folder of images with a trained model.

Stopped on request (``--stop-file``): between cases, exit status 0, a ``done`` event with ``status="stopped"``
(``cases`` written of ``total``); the label maps written are complete (``--continue`` does the rest).

Exit status: 0 when every case was predicted (or the run was stopped); 1 when some cases failed (unreadable,
4D, 2D for a 3D model, only NaN): the others are predicted, each failure has a ``case`` event with
``status="failed"``, the ``done`` event lists them (``failed``, ``failures``) and the log ends with the list;
2 for errors that stop the whole run (no model, an output that would overwrite an input, an unwritable -o).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.compute import ComputeSettings
from AutoSegNetLib.inference.files import PredictionFailedError, predict_files
from AutoSegNetLib.inference.model_folder import CHECKPOINT_NAMES, find_model_folder
from AutoSegNetLib.inference.predictor import Predictor
from AutoSegNetLib.inference.sliding_window import AVERAGES
from AutoSegNetLib.inference.uncertainty import UNCERTAINTY_KINDS

log = logging.getLogger(__name__)

#: Exit status when some cases failed and the others were predicted.
EXIT_SOME_CASES_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", required=True, help="folder with images named <case>_0000<ending>, ...")
    parser.add_argument("-o", "--output", required=True, help="output folder (label maps <case><ending>)")
    model = parser.add_argument_group("model (either -d and -c, or --model-folder)")
    model.add_argument("-d", "--dataset", help="dataset id or name in the workspace, e.g. 4 or Dataset004_Hippocampus")
    model.add_argument("-c", "--configuration", help="configuration: 2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres")
    model.add_argument("-p", "--plans", default=None, help="plans name (only if several models share -c)")
    model.add_argument("--model-folder", help="a model folder (AutoSegNet__<plans>__<configuration>) instead of -d/-c")
    parser.add_argument("-f", "--folds", nargs="+", default=None,
                        help="folds to ensemble, e.g. 0 1 2 3 4 or all (default: every trained fold)")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_NAMES, default="final", help="checkpoint to use")
    parser.add_argument("--step", type=float, default=0.5, help="tile step as a fraction of the patch (default 0.5)")
    parser.add_argument("--no-tta", action="store_true", help="no test-time mirroring (about 8x faster in 3D)")
    parser.add_argument("--average", choices=AVERAGES, default="probabilities",
                        help="average mirrored passes, folds and tiles as probabilities (default) or as logits with "
                        "the softmax after the average, as nnU-Net does")
    parser.add_argument("--reorient", action="store_true",
                        help="predict images stored in another orientation than the training cases (say RAS instead "
                        "of LPS, or sagittal instead of axial slices) in the training orientation, by exact axis swaps "
                        "and flips, and write the result in the input's; without it such images only get a warning")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--tile-batch", type=int, default=1, help="tiles per forward pass (default 1)")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write <case>.npz + <case>.json (needed by `autosegnet ensemble`)")
    parser.add_argument("--save-uncertainty", nargs="?", const="entropy", choices=UNCERTAINTY_KINDS, default=None,
                        help="write <case>_uncertainty<ending>: normalised entropy (default) or disagreement between "
                        "folds and mirrored passes")
    parser.add_argument("--disable-postprocessing", action="store_true",
                        help="do not apply the model's postprocessing.json")
    parser.add_argument("--num-parts", type=int, default=1, help="split the cases into this many parts")
    parser.add_argument("--part-id", type=int, default=0, help="which part (0-based) this run predicts")
    parser.add_argument("--continue", dest="skip_existing", action="store_true",
                        help="skip cases whose label map already exists in the output folder")


def run(args: argparse.Namespace, ctx) -> int:
    folder = args.model_folder or _model_folder(args, ctx)
    predictor = Predictor.from_model_folder(
        folder, folds=args.folds, checkpoint=args.checkpoint, device=args.device, tta=not args.no_tta,
        step=args.step, postprocess=not args.disable_postprocessing, average=args.average,
        reorient=args.reorient,
        compute=ComputeSettings(tile_batch=args.tile_batch),
    )  # fmt: skip
    try:
        predict_files(
            predictor, args.input, args.output, save_probabilities=args.save_probabilities,
            uncertainty=args.save_uncertainty, num_parts=args.num_parts, part_id=args.part_id,
            skip_existing=args.skip_existing, reporter=ctx.reporter, stop=ctx.stop,
        )  # fmt: skip
    except PredictionFailedError as error:
        log.error("predict: %s", error)
        return EXIT_SOME_CASES_FAILED
    return 0


def _model_folder(args: argparse.Namespace, ctx) -> Path:
    if not args.dataset or not args.configuration:
        raise AutoSegNetError("Say which model to use: -d DATASET -c CONFIGURATION, or --model-folder DIR.")
    return find_model_folder(ctx.workspace, args.dataset, args.configuration, args.plans)
