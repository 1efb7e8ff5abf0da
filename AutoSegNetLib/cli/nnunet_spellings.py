"""nnU-Net v2's names for things that AutoSegNet names differently: trainers, planners, checkpoint files.

Used by the commands' ``add_arguments`` so that command lines copied from nnU-Net parse to the same meaning, or
stop with one line naming the AutoSegNet option to use instead (the whole table: ``docs/nnunet_commands.md``).
Kept free of heavy imports: ``autosegnet verify`` must not import torch.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any

from AutoSegNetLib.layout import CHECKPOINT_PREFIX, CHECKPOINT_SUFFIX, checkpoint_file_name

#: nnU-Net's default trainer: what AutoSegNet trains (no other trainer classes exist here).
NNUNET_TRAINER = "nnUNetTrainer"

#: nnU-Net planner classes -> AutoSegNet planner names (``--planner``).
NNUNET_PLANNERS = {
    "ExperimentPlanner": "default",
    "nnUNetPlannerResEncM": "resenc-m",
    "nnUNetPlannerResEncL": "resenc-l",
    "nnUNetPlannerResEncXL": "resenc-xl",
}

_NO_TRAINER = ("AutoSegNet has no trainer classes; its training settings are options: --epochs, --lr, --batch-size, "
               "--warmup-epochs, --oversample-foreground, --no-augmentation, or --config FILE.json for the rest")

#: nnU-Net trainer variants (a regular expression on the name) -> what to pass instead, data not code.
TRAINER_EQUIVALENTS: tuple[tuple[str, str], ...] = (
    (r"nnUNetTrainer_(?P<n>\d+)epochs?", "--epochs {n}"),
    (r"nnUNetTrainer_(?P<n>\d+)epochs?_NoMirroring",
     "--epochs {n} (mirroring cannot be switched off on its own; --no-augmentation switches off all augmentation)"),
    (r"nnUNetTrainerBenchmark_(?P<n>\d+)epochs?(_noDataLoading)?",
     "--epochs {n} (there is no benchmark trainer: the log and the json progress events time every epoch)"),
    (r"nnUNetTrainerNoDA", "--no-augmentation"),
    (r"nnUNetTrainer_?NoMirroring|nnUNetTrainer_onlyMirror01.*",
     "no equivalent: mirroring is part of the augmentation, --no-augmentation switches off all of it"),
    (r"nnUNetTrainerNoDeepSupervision", '--config FILE.json holding {{"deep_supervision": false}}'),
    (r"nnUNetTrainer_warmup", "--warmup-epochs 50 (a linear learning-rate warm-up)"),
    (r"nnUNetTrainer_probabilisticOversampling.*",
     "--oversample-foreground FRACTION (a fixed share of each batch, not nnU-Net's per-sample probability)"),
)


def trainer_equivalent(name: str) -> str:
    """What to pass to ``autosegnet train`` instead of ``-tr name`` (a sentence naming the options)."""
    for pattern, template in TRAINER_EQUIVALENTS:
        match = re.fullmatch(pattern, name)
        if match:
            return template.format(**match.groupdict())
    return f"no direct equivalent: {_NO_TRAINER}"


def trainer_message(names: Sequence[str], for_training: bool) -> str:
    """The one-line refusal of ``-tr`` with a trainer other than nnUNetTrainer."""
    other = next(n for n in names if n != NNUNET_TRAINER)
    if for_training:
        return (f"{other}: AutoSegNet trains nnU-Net's default recipe (nnUNetTrainer) and sets variations with "
                f"options; instead of this trainer use {trainer_equivalent(other)}")
    return (f"{other}: AutoSegNet model folders are named AutoSegNet__<plans>__<configuration>, without a trainer "
            "(a model trained with other settings has the same name); drop -tr, and choose between models with "
            "-p PLANS or --model-folder")


class _TrainerOption(argparse.Action):
    """``-tr NAME``: nnUNetTrainer is accepted (it is what AutoSegNet trains); other names are refused."""

    def __init__(self, option_strings: Sequence[str], dest: str, for_training: bool = True, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, **kwargs)
        self.for_training = for_training

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        names = list(values) if isinstance(values, list) else [values]
        if any(name != NNUNET_TRAINER for name in names):
            raise argparse.ArgumentError(self, trainer_message(names, self.for_training))


def add_trainer_option(parser: argparse.ArgumentParser, for_training: bool, nargs: str | None = None) -> None:
    """nnU-Net's ``-tr TRAINER``: ``nnUNetTrainer`` is accepted and changes nothing; other names are refused with
    the equivalent options (``for_training``) or the way to choose a model."""
    parser.add_argument("-tr", action=_TrainerOption, for_training=for_training, nargs=nargs, metavar="TRAINER",
                        help=f"nnU-Net's trainer class: only {NNUNET_TRAINER} (what AutoSegNet trains) is accepted")


def checkpoint_type(names: Sequence[str]) -> Callable[[str], str]:
    """An argparse type reading ``final`` or nnU-Net's ``checkpoint_final.pth`` (any of ``names``) as ``final``."""
    prefix, suffix = re.escape(CHECKPOINT_PREFIX), re.escape(CHECKPOINT_SUFFIX)
    pattern = re.compile(rf"(?:{prefix})?({'|'.join(map(re.escape, names))})(?:{suffix})?")

    def checkpoint(text: str) -> str:
        match = pattern.fullmatch(text.strip())
        if match is None:
            files = ", ".join(map(checkpoint_file_name, names))
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a checkpoint AutoSegNet writes ({files}); give one of them or its short name "
                f"({', '.join(names)})"
            )
        return match.group(1)

    return checkpoint


def planner_type(planners: Sequence[str]) -> Callable[[str], str]:
    """An argparse type reading an AutoSegNet planner name or nnU-Net's planner class (``nnUNetPlannerResEncL``)."""

    def planner(text: str) -> str:
        if text in planners:
            return text
        if text in NNUNET_PLANNERS:
            return NNUNET_PLANNERS[text]
        closest = " (closest: resenc-m, the 8 GB preset of that network)" if text == "ResEncUNetPlanner" else ""
        classes = ", ".join(f"{theirs} = {ours}" for theirs, ours in NNUNET_PLANNERS.items())
        raise argparse.ArgumentTypeError(
            f"no planner {text!r}{closest}; choose one of {', '.join(sorted(planners))} (nnU-Net's {classes}), "
            "or register another in Python with AutoSegNetLib.planning.planners.register_planner"
        )

    return planner


#: Reasons shared by several commands' ignored options.
NO_PROGRESS_BAR = "progress is shown per --progress (text, json or none)"
ONE_PROCESS = "this step runs in one process here"
