"""``autosegnet predict``: segment a folder of images with a trained model.

Stopped on request (``--stop-file``): between cases, exit status 0, a ``done`` event with ``status="stopped"``
(``cases`` written of ``total``); the label maps written are complete (``--continue`` does the rest).

Exit status: 0 when every case was predicted (or the run was stopped); 1 when some cases failed (unreadable,
4D, 2D for a 3D model, only NaN): the others are predicted, each failure has a ``case`` event with
``status="failed"``, the ``done`` event lists them (``failed``, ``failures``) and the log ends with the list;
2 for errors that stop the whole run (no model, an output that would overwrite an input, an unwritable -o).

Several configurations (``-c 2d 3d_fullres``) are ensembled in one run: each predicts with probabilities, their
mean gives the label maps (see :mod:`AutoSegNetLib.inference.multi_config`). nnU-Net's spellings of the options
(``-chk``, ``-device``, ``-step_size``, ``--disable_tta``, ...) are accepted: docs/nnunet_commands.md.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from AutoSegNetLib.cli.arguments import add_ignored, add_refused, after_parse
from AutoSegNetLib.cli.nnunet_spellings import NO_PROGRESS_BAR, add_trainer_option, checkpoint_type
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.compute import ComputeSettings
from AutoSegNetLib.inference.files import PredictionFailedError, predict_files
from AutoSegNetLib.inference.model_folder import find_model_folder
from AutoSegNetLib.inference.multi_config import predict_with_configurations
from AutoSegNetLib.inference.predictor import Predictor
from AutoSegNetLib.inference.sliding_window import AVERAGES
from AutoSegNetLib.inference.uncertainty import UNCERTAINTY_KINDS
from AutoSegNetLib.layout import CHECKPOINT_KINDS

log = logging.getLogger(__name__)

#: Exit status when some cases failed and the others were predicted.
EXIT_SOME_CASES_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", required=True, help="folder with images named <case>_0000<ending>, ...")
    parser.add_argument("-o", "--output", required=True, help="output folder (label maps <case><ending>)")
    model = parser.add_argument_group("model (either -d and -c, or --model-folder)")
    model.add_argument("-d", "--dataset", help="dataset id or name in the workspace, e.g. 4 or Dataset004_Hippocampus")
    model.add_argument("-c", "--configuration", nargs="+", metavar="CONFIG",
                       help="configuration: 2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres; several (-c 2d 3d_fullres) "
                       "are ensembled: each predicts with probabilities (kept in OUT/ensemble_members/ until all "
                       "cases are done) and their mean gives the label maps, as `autosegnet ensemble` does")
    model.add_argument("-p", "--plans", default=None, help="plans name (only if several models share -c)")
    model.add_argument("--model-folder", "-m", help="a model folder (AutoSegNet__<plans>__<configuration>) instead "
                       "of -d/-c; a folder trained with nnU-Net is converted with `autosegnet import-nnunet` first")
    add_trainer_option(model, for_training=False)
    parser.add_argument("-f", "--folds", nargs="+", default=None,
                        help="folds to ensemble, e.g. 0 1 2 3 4 or all (default: every trained fold)")
    parser.add_argument("--checkpoint", "-chk", type=checkpoint_type(CHECKPOINT_KINDS), choices=CHECKPOINT_KINDS,
                        default="final", help="checkpoint to use: final, best or latest (nnU-Net's "
                        "checkpoint_final.pth etc. work too) (default: %(default)s)")
    parser.add_argument("--step", "-step_size", type=float, default=0.5,
                        help="tile step as a fraction of the patch (default 0.5)")
    parser.add_argument("--no-tta", "--disable_tta", action="store_true",
                        help="no test-time mirroring (about 8x faster in 3D)")
    parser.add_argument("--average", choices=AVERAGES, default="probabilities",
                        help="average mirrored passes, folds and tiles as probabilities (default) or as logits with "
                        "the softmax after the average, as nnU-Net does")
    parser.add_argument("--reorient", action="store_true",
                        help="predict images stored in another orientation than the training cases (say RAS instead "
                        "of LPS, or sagittal instead of axial slices) in the training orientation, by exact axis swaps "
                        "and flips, and write the result in the input's; without it such images only get a warning")
    parser.add_argument("--device", "-device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--tile-batch", type=int, default=1, help="tiles per forward pass (default 1)")
    parser.add_argument("--save-probabilities", "--save_probabilities", action="store_true",
                        help="also write <case>.npz + <case>.json (needed by `autosegnet ensemble`)")
    parser.add_argument("--save-uncertainty", nargs="?", const="entropy", choices=UNCERTAINTY_KINDS, default=None,
                        help="write <case>_uncertainty<ending>: normalised entropy (default) or disagreement between "
                        "folds and mirrored passes")
    parser.add_argument("--disable-postprocessing", action="store_true",
                        help="do not apply the model's postprocessing.json")
    parser.add_argument("--num-parts", "-num_parts", type=int, default=1, help="split the cases into this many parts")
    parser.add_argument("--part-id", "-part_id", type=int, default=0, help="which part (0-based) this run predicts")
    parser.add_argument("--continue", "--continue_prediction", "--c", dest="skip_existing", action="store_true",
                        help="skip cases whose label map already exists in the output folder")
    add_nnunet_prediction_options(parser)
    after_parse(parser, _check_configurations)


def add_nnunet_prediction_options(parser: argparse.ArgumentParser) -> None:
    """nnU-Net's ``nnUNetv2_predict`` options without an effect or an equivalent here."""
    add_ignored(parser, "-npp", "-nps", nargs=1, reason="each case is preprocessed and written by the predicting "
                "process")
    add_ignored(parser, "--disable_progress_bar", nargs=0, reason=NO_PROGRESS_BAR)
    add_ignored(parser, "--not_on_device", nargs=0, reason="the sliding window moves its results to the CPU by "
                "itself when GPU memory runs out")
    add_refused(parser, "-prev_stage_predictions", nargs=1, message="a 3d_cascade_fullres model predicts its "
                "3d_lowres stage itself (the model folder next to it, or --lowres-model-folder DIR); drop the flag")
    parser.add_argument("--lowres-model-folder", type=Path, metavar="DIR", help="for a 3d_cascade_fullres model: "
                        "the 3d_lowres model folder to run first (default: the folder beside it)")


def _check_configurations(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Several ``-c`` make an ensemble: distinct configurations of one dataset, no uncertainty map."""
    configurations = args.configuration or []
    if len(configurations) != len(set(configurations)):
        parser.error(f"-c names a configuration twice: {' '.join(configurations)}")
    if len(configurations) > 1 and args.model_folder:
        parser.error("several configurations (-c) ensemble models of -d DATASET; --model-folder names one model")
    if len(configurations) > 1 and args.save_uncertainty:
        parser.error("--save-uncertainty needs one configuration; an ensemble of several (-c) has no uncertainty map")


def run(args: argparse.Namespace, ctx) -> int:
    try:
        if args.configuration and len(args.configuration) > 1:
            _predict_configurations(args, ctx)
        else:
            _predict(args, ctx)
    except PredictionFailedError as error:
        log.error("predict: %s", error)
        return EXIT_SOME_CASES_FAILED
    return 0


def _predict(args: argparse.Namespace, ctx) -> None:
    predictor = _load(args, args.model_folder or _model_folder(args, ctx))
    predict_files(
        predictor, args.input, args.output, save_probabilities=args.save_probabilities,
        uncertainty=args.save_uncertainty, num_parts=args.num_parts, part_id=args.part_id,
        skip_existing=args.skip_existing, reporter=ctx.reporter, stop=ctx.stop,
    )


def _predict_configurations(args: argparse.Namespace, ctx) -> None:
    if not args.dataset:
        raise AutoSegNetError("Say which dataset's models to ensemble: -d DATASET -c CONFIG CONFIG ...")
    folders = [find_model_folder(ctx.workspace, args.dataset, c, args.plans) for c in args.configuration]
    predict_with_configurations(
        folders, lambda folder: _load(args, folder, postprocess=False), args.input, args.output,
        save_probabilities=args.save_probabilities, num_parts=args.num_parts, part_id=args.part_id,
        skip_existing=args.skip_existing, reporter=ctx.reporter, stop=ctx.stop,
    )


def _load(args: argparse.Namespace, folder: str | Path, postprocess: bool = True) -> Predictor:
    """The predictor of ``folder`` with the command's settings (``postprocess`` and not --disable-postprocessing)."""
    return Predictor.from_model_folder(
        folder, folds=args.folds, checkpoint=args.checkpoint, device=args.device, tta=not args.no_tta,
        step=args.step, postprocess=postprocess and not args.disable_postprocessing, average=args.average,
        reorient=args.reorient, compute=ComputeSettings(tile_batch=args.tile_batch),
        previous_stage_folder=getattr(args, "lowres_model_folder", None),
    )


def _model_folder(args: argparse.Namespace, ctx) -> Path:
    if not args.dataset or not args.configuration:
        raise AutoSegNetError("Say which model to use: -d DATASET -c CONFIGURATION, or --model-folder DIR.")
    return find_model_folder(ctx.workspace, args.dataset, args.configuration[0], args.plans)
