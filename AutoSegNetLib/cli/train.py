"""``autosegnet train DATASET CONFIGURATION FOLD``: parse, build the TrainingConfig, call the training stage.

Multi-GPU: run under ``torchrun --nproc_per_node N -m AutoSegNetLib train ...`` (detected from the environment
here, the only place that reads it) or pass ``--num-gpus N`` to start the N processes ourselves.

Refused, with the command to run: preprocessed data that no finished run recorded as complete, or that no longer
matches the raw dataset or the plans; and a fold another process is training (the error names its PID, command and
start). Automatic splits follow added or removed cases; splits written by hand are refused when cases changed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

from AutoSegNetLib.cli.arguments import add_dataset_argument, add_ignored, add_note, add_refused, after_parse
from AutoSegNetLib.cli.nnunet_spellings import add_trainer_option
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import PLANS_FILE
from AutoSegNetLib.training.config import AMP_MODES, DEVICES, FINETUNE_OVERRIDES, TrainingConfig
from AutoSegNetLib.utils.atomic import read_json
from AutoSegNetLib.workspace import Workspace

#: CLI option -> TrainingConfig field (options left unset keep the config's value).
FIELD_OPTIONS = {
    "epochs": "epochs", "iterations": "iterations_per_epoch", "val_iterations": "val_iterations", "lr": "lr",
    "batch_size": "batch_size", "patch_size": "patch_size", "num_workers": "num_workers", "seed": "seed",
    "device": "device", "amp": "amp", "save_every": "save_every", "time_budget": "time_budget_minutes",
    "warmup_epochs": "warmup_epochs", "oversample_foreground": "oversample_foreground",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser, "dataset id, name or folder name (e.g. 4, Hippocampus, Dataset004_Hippocampus)",
                         example="autosegnet train 4 3d_fullres 0")
    parser.add_argument("configuration", help="planned configuration: 2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres "
                        "(after the 3d_lowres folds)")
    parser.add_argument("fold", help="cross-validation fold 0-4 (splits_final.json) or 'all'")
    parser.add_argument("--config", type=Path, help="JSON file with TrainingConfig fields (flags below override it)")
    parser.add_argument("--epochs", type=int, help="number of epochs (default 1000; 25 with --pretrained)")
    parser.add_argument("--iterations", type=int, help="training iterations per epoch (default 250)")
    parser.add_argument("--val-iterations", type=int, help="validation batches per epoch (default 50)")
    parser.add_argument("--lr", type=float, help="initial learning rate (default 1e-2)")
    parser.add_argument("--warmup-epochs", type=int, help="linear learning-rate warm-up epochs (default 0; 3 with "
                        "--pretrained)")
    parser.add_argument("--batch-size", type=int, help="global batch size (default: the plan's)")
    parser.add_argument("--patch-size", type=int, nargs="+", help="patch size in voxels per axis (default: the "
                        "plan's); recorded in the model folder's plans.json, so validation and predict tile with it")
    parser.add_argument("--oversample-foreground", type=float, help="fraction of each batch forced to contain "
                        "foreground (default 0.33)")
    parser.add_argument("--num-workers", type=int, help="background data workers (default: 0 on CPU, up to 8 with "
                        "a GPU; 0 = in this process)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--device", "-device", choices=DEVICES, help="device (default auto: cuda, else mps, else "
                        "cpu)")
    parser.add_argument("--amp", choices=AMP_MODES, help="mixed precision (default auto: float16 on CUDA only; "
                        "bf16 on a CPU with AVX512-BF16 or AMX trains about 1.2x faster at the same Dice)")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels-last memory format (default: on for the CPU)")
    parser.add_argument("--fast-norm", action=argparse.BooleanOptionalAction, default=None,
                        help="compute InstanceNorm with the equivalent, faster GroupNorm kernel (default: on for "
                        "the CPU)")
    parser.add_argument("--no-augmentation", action="store_true", help="train without data augmentation")
    parser.add_argument("--no-final-validation", action="store_true", help="skip validation/summary.json at the end")
    parser.add_argument("--save-every", type=int, help="save checkpoint_latest every N epochs (default 50)")
    parser.add_argument("--time-budget", type=float, metavar="MINUTES", help="fit the number of epochs to this "
                        "wall-clock budget (measured on the first epochs)")
    parser.add_argument("--continue", "--c", dest="continue_training", action="store_true",
                        help="resume from the fold's latest checkpoint (exactly where it stopped)")
    parser.add_argument("--pretrained", type=Path, metavar="CHECKPOINT",
                        help="fine-tune from this checkpoint (same plan; the head is re-made if the labels differ)")
    parser.add_argument("--validate-only", "--val", action="store_true", help="only predict the validation cases with "
                        "checkpoint_final and write validation/summary.json")
    parser.add_argument("--num-gpus", "-num_gpus", type=int, default=1, help="train with N processes (DDP; one per "
                        "GPU, gloo on CPU). Under torchrun this is taken from the environment.")
    add_nnunet_training_options(parser)


def add_nnunet_training_options(parser: argparse.ArgumentParser) -> None:
    """nnU-Net's ``nnUNetv2_train`` options that are spelled differently or mean something else here."""
    parser.add_argument("-p", "--plans", default=None, metavar="PLANS",
                        help="plans identifier, e.g. nnUNetPlans: checked against the dataset's plans.json (AutoSegNet "
                        "trains the one plans file of a dataset; choose other plans with plan --planner)")
    add_trainer_option(parser, for_training=True)
    parser.add_argument("-pretrained_weights", type=Path, default=None, metavar="CHECKPOINT",
                        help="nnU-Net's spelling: start from these weights with the full schedule (--epochs default "
                        "1000, no warm-up), unlike --pretrained's short fine-tuning")
    after_parse(parser, _pretrained_weights_as_nnunet)
    add_ignored(parser, "--npz", nargs=0, reason="the final validation always stores probabilities "
                "(fold_K/validation/<case>.npz), which find-best needs")
    add_refused(parser, "--val_best", nargs=0, message="validation uses checkpoint_final; to predict the validation "
                "cases with checkpoint_best, predict them with `autosegnet predict --checkpoint best`")
    add_refused(parser, "--disable_checkpointing", nargs=0, message="checkpoints are always written; --save-every N "
                "sets how often checkpoint_latest.pth is saved")
    add_refused(parser, "--splits", "-s", nargs=1, message="AutoSegNet reads the splits from "
                "<workspace>/preprocessed/<Dataset>/splits_final.json: copy your file there")


def _pretrained_weights_as_nnunet(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``-pretrained_weights`` means nnU-Net's full schedule from those weights, not --pretrained's fine-tuning."""
    weights = getattr(args, "pretrained_weights", None)
    if hasattr(args, "pretrained_weights"):
        delattr(args, "pretrained_weights")
    if weights is None:
        return
    if args.pretrained is not None and args.pretrained != weights:
        parser.error(f"two checkpoints to start from: --pretrained {args.pretrained} and -pretrained_weights {weights}")
    if args.continue_training:
        parser.error("-pretrained_weights starts a training from those weights, --continue resumes one: choose one")
    args.pretrained = weights
    if args.config is not None:
        add_note(args, "-pretrained_weights with --config: the fine-tuning defaults (--pretrained) apply to "
                 f"{', '.join(FINETUNE_OVERRIDES)} unless set by a flag")
        return
    defaults = {f.name: f.default for f in dataclasses.fields(TrainingConfig)}
    for option in FINETUNE_OVERRIDES:
        if getattr(args, option) is None:
            setattr(args, option, defaults[option])


def build_config(args: argparse.Namespace, base: TrainingConfig | None = None) -> TrainingConfig:
    """``base`` (or the ``--config`` file, or the defaults) with the given flags applied."""
    data: dict[str, Any] = base.to_dict() if base is not None else {}
    if args.config is not None:
        data.update(read_json(args.config))
    if args.pretrained is not None and not args.continue_training:
        data.update({k: v for k, v in FINETUNE_OVERRIDES.items() if getattr(args, k, None) is None})
    data.update({field: getattr(args, option) for option, field in FIELD_OPTIONS.items()
                 if getattr(args, option) is not None})
    if args.warmup_epochs is None and data.get("warmup_epochs", 0) >= data.get("epochs", 1) > 0:
        data["warmup_epochs"] = data["epochs"] - 1  # the fine-tuning default warm-up, shortened to a short schedule
    if args.compile:
        data["compile"] = True
    for flag in ("channels_last", "fast_norm"):
        if getattr(args, flag) is not None:
            data[flag] = getattr(args, flag)
    if args.no_augmentation:
        data["augmentation"] = False
    if args.no_final_validation:
        data["final_validation"] = False
    return TrainingConfig.from_dict(data, source=str(args.config) if args.config else "command line")


def run(args: argparse.Namespace, ctx: Any) -> int:
    from AutoSegNetLib.training import DistributedSettings, saved_training_config, train, train_in_processes

    check_plans_identifier(ctx.workspace, args.dataset, args.plans)
    fold: int | str = args.fold if args.fold == "all" else _fold_number(args.fold)
    base = saved_training_config(ctx.workspace, args.dataset, args.configuration, fold) \
        if args.continue_training else None
    config = build_config(args, base)
    options = {"continue_training": args.continue_training, "pretrained": args.pretrained,
               "validate_only": args.validate_only, "stop": ctx.stop}
    distributed = DistributedSettings.from_environ(os.environ)
    if distributed is None and args.num_gpus > 1:
        train_in_processes(args.num_gpus, ctx.workspace, args.dataset, args.configuration, fold, config,
                           ctx.reporter.mode, **options)
        return 0
    train(ctx.workspace, args.dataset, args.configuration, fold, config, ctx.reporter, distributed=distributed,
          **options)
    return 0


def check_plans_identifier(workspace: Workspace, dataset: str, plans: str | None) -> None:
    """Refuse ``-p PLANS`` when the dataset's plans.json holds other plans, naming the planner that makes them."""
    from AutoSegNetLib.planning.planners import PLANNERS, get_planner
    from AutoSegNetLib.planning.plans import Plans

    if plans is None:
        return
    path = workspace.preprocessed_dataset(dataset) / PLANS_FILE
    if not path.is_file():
        return  # no plans at all: training says what to run
    have = Plans.load(path).plans_name
    if have == plans:
        return
    planners = [name for name in PLANNERS if get_planner(name).plans_name == plans]
    how = (f"plan them with `autosegnet plan-and-preprocess {dataset} --planner {planners[0]}`" if planners else
           "AutoSegNet trains the one plans.json of a dataset")
    raise AutoSegNetError(f"-p {plans}: the plans of {path.parent.name} are {have} ({path}); {how}, or drop -p.")


def _fold_number(text: str) -> int:
    if not text.isdigit():
        raise AutoSegNetError(f"Fold must be a number (0-4) or 'all', got {text!r}.")
    return int(text)
