"""``autosegnet move-plans SOURCE TARGET [-p SOURCE_PLANS] [-o TARGET_PLANS_NAME]``: give TARGET the plans of SOURCE
for fine-tuning (nnU-Net's ``nnUNetv2_move_plans_between_datasets``; see :mod:`AutoSegNetLib.models.move_plans`).
nnU-Net's spellings work too: ``-s SOURCE -t TARGET -sp SOURCE_PLANS -tp TARGET_PLANS_NAME``.

Then ``autosegnet preprocess TARGET`` and ``autosegnet train TARGET CONFIGURATION FOLD --pretrained CHECKPOINT``.
"""

from __future__ import annotations

import argparse

from AutoSegNetLib.cli.arguments import Slot, add_positional_or_flag
from AutoSegNetLib.models.move_plans import move_plans
from AutoSegNetLib.planning.plans import Plans


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_positional_or_flag(
        parser, [Slot("source", "-s", "SOURCE"), Slot("target", "-t", "TARGET")],
        ["dataset whose plans to use (id, name or folder name: its preprocessed plans or the plans of its installed "
         "model), or the path of a plans.json / model folder", "raw dataset to fine-tune on (id, name or folder name)"],
        [("-s", "--source"), ("-t", "--target")], missing_hint="; for example `autosegnet move-plans 4 5`",
    )
    parser.add_argument("-p", "-sp", "--source-plans", dest="source_plans", default=None, metavar="SOURCE_PLANS",
                        help="plans name of the source, when it has several (e.g. nnUNetPlans)")
    parser.add_argument("-o", "-tp", "--target-plans", dest="target_plans", default=None, metavar="TARGET_PLANS_NAME",
                        help="plans name at the target (default: <source plans>FromDatasetXXX); it names the "
                        "target's preprocessed data and model folders")
    parser.add_argument("--force", action="store_true", help="replace other plans of the same name at the target")


def run(args: argparse.Namespace, ctx) -> int:
    written = move_plans(ctx.workspace, args.source, args.target, args.source_plans, args.target_plans, args.force)
    plans = Plans.load(written)
    ctx.reporter.emit("done", stage="move-plans", path=str(written), dataset=plans.dataset_name,
                      plans_name=plans.plans_name, configurations=list(plans.configurations))
    return 0
