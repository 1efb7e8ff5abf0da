"""``autosegnet convert msd|nnunet-v1|folders ...``: build a raw dataset from other layouts.

Examples::

    autosegnet convert msd ../shared/data/Task04_Hippocampus            # -> raw/Dataset004_Hippocampus
    autosegnet convert nnunet-v1 /data/Task005_Prostate --id 105
    autosegnet convert msd -i Task05_Prostate -overwrite_id 205                  # nnU-Net's spelling
    autosegnet convert nnunet-v1 /data/Task027_ACDC Dataset027_ACDC              # nnU-Net's spelling
    autosegnet convert folders --images ISBI/image --labels ISBI/label --name ISBIMembrane --id 120 \\
        --map-labels 255=1 --label-names membrane cell --channel-names EM
    autosegnet convert folders --images DRIVE/training/images --labels DRIVE/training/1st_manual \\
        --image-suffix _training --label-suffix _manual1 --map-labels 255=1 --label-names background vessel \\
        --name DRIVE --id 121 --test-images DRIVE/test/images --test-image-suffix _test
"""

from __future__ import annotations

import argparse
import logging
import os

from AutoSegNetLib.cli import _add_common_options
from AutoSegNetLib.cli.arguments import Slot, add_positional_or_flag, after_parse
from AutoSegNetLib.dataset.convert_folders import convert_folders
from AutoSegNetLib.dataset.convert_msd import convert_msd
from AutoSegNetLib.dataset.convert_nnunet_v1 import convert_nnunet_v1
from AutoSegNetLib.workspace import _FOLDER as DATASET_FOLDER_NAME

log = logging.getLogger(__name__)


def parse_label_map(text: str) -> dict[int, int]:
    """``"255=1,7=2"`` -> ``{255: 1, 7: 2}``."""
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        old, sep, new = item.partition("=")
        try:
            if not sep:
                raise ValueError
            mapping[int(old)] = int(new)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--map-labels expects OLD=NEW pairs of integers separated by commas (e.g. 255=1,7=2), got {item!r}"
            ) from None
    return mapping


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="convert_kind", metavar="KIND", required=True)
    msd = kinds.add_parser("msd", help="Medical Segmentation Decathlon task folder (TaskXX_Name)",
                           description="Convert an MSD task folder; 4D multi-channel images are split into channels.")
    _add_source(msd, "the TaskXX_Name folder with dataset.json, imagesTr/, labelsTr/ (imagesTs/)")
    msd.add_argument("--id", "-overwrite_id", type=int, dest="dataset_id",
                     help="dataset ID (default: XX from TaskXX_Name)")
    msd.add_argument("--name", help="dataset name (default: Name from TaskXX_Name)")
    v1 = kinds.add_parser("nnunet-v1", help="nnU-Net v1 task folder (TaskXXX_Name)",
                          description="Convert an nnU-Net v1 task folder into the v2 layout.")
    _add_source(v1, "the TaskXXX_Name folder")
    v1.add_argument("--id", type=int, dest="dataset_id", help="dataset ID (default: XXX from TaskXXX_Name)")
    v1.add_argument("--name", help="dataset name (default: Name from TaskXXX_Name)")
    _add_output_name(v1)
    folders = kinds.add_parser("folders", help="a folder of images + a folder of labels with matching names",
                               description="Convert image/label folders whose file names match (up to a suffix).")
    _add_folder_arguments(folders)
    for sub in (msd, v1, folders):
        sub.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this name")
        sub.add_argument("-np", "--num-workers", type=int, default=default_workers(),
                         help="worker processes (default: %(default)s)")
        _add_common_options(sub, defaults=False)


def _add_source(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The folder to convert: positional or ``-i`` (nnU-Net's spelling); ``args.source`` either way."""
    add_positional_or_flag(parser, [Slot("source", "-i", "SOURCE")], [help_text], [("-i", "--input")])


def _add_output_name(parser: argparse.ArgumentParser) -> None:
    """nnU-Net's ``DatasetXXX_Name`` output (positional after SOURCE, or ``-o``): sets ``--id`` and ``--name``."""
    parser.add_argument("-o", "--output", dest="output_dataset_name", default=None, metavar="DatasetXXX_Name",
                        help="the dataset to write, named as nnU-Net does: the same as --id XXX --name Name (also "
                        "accepted as a second positional argument, as nnUNetv2_convert_old_nnUNet_dataset has it)")
    parser.add_argument("output_dataset_name_positional", nargs="?", default=None, metavar="DatasetXXX_Name",
                        help="see -o")
    after_parse(parser, _apply_output_name)


def _apply_output_name(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    positional = args.__dict__.pop("output_dataset_name_positional", None)
    flagged = args.__dict__.pop("output_dataset_name", None)
    if positional and flagged and positional != flagged:
        parser.error(f"two output datasets: {positional} and -o {flagged}")
    name = flagged or positional
    if name is None:
        return
    match = DATASET_FOLDER_NAME.match(name)
    if match is None:
        parser.error(f"{name!r} is not a dataset folder name DatasetXXX_Name (three digits); or give --id and --name")
    dataset_id, short = int(match.group(1)), match.group(2)
    for given, wanted, flag in ((args.dataset_id, dataset_id, "--id"), (args.name, short, "--name")):
        if given is not None and given != wanted:
            parser.error(f"{flag} {given} contradicts the output dataset {name}")
    args.dataset_id, args.name = dataset_id, short


def _add_folder_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, help="folder of image files (one file per case)")
    parser.add_argument("--labels", required=True, help="folder of label files (may be the images folder)")
    parser.add_argument("--name", required=True, help="dataset name (letters, digits, _ and -)")
    parser.add_argument("--id", type=int, required=True, dest="dataset_id", help="dataset ID (1..999)")
    parser.add_argument("--channel-names", nargs="+", metavar="NAME",
                        help="channel names in order (default: R G B for colour images, else 'image'); "
                        "'CT' selects CT normalisation")
    parser.add_argument("--label-names", nargs="+", metavar="NAME",
                        help="label names for the values 0, 1, 2, ... (default: background, label_1, ...)")
    parser.add_argument("--map-labels", type=parse_label_map, default={}, metavar="OLD=NEW,...",
                        help="renumber label values, e.g. 255=1 for 0/255 masks")
    parser.add_argument("--ending", help="file ending of the converted files (default: the images' ending; "
                        "GIF/JPEG/BMP become .png)")
    parser.add_argument("--image-suffix", default="", help="suffix after the case name in image file names "
                        "(e.g. _training for 21_training.tif)")
    parser.add_argument("--label-suffix", default="", help="suffix after the case name in label file names "
                        "(e.g. _manual1 for 21_manual1.gif)")
    parser.add_argument("--test-images", help="folder of test images (no labels) -> imagesTs/")
    parser.add_argument("--test-image-suffix", help="suffix of test image names (default: --image-suffix)")
    parser.add_argument("--ignore-unmatched", action="store_true",
                        help="leave out images without label and labels without image instead of failing")


def run(args: argparse.Namespace, ctx) -> int:
    common = {"overwrite": args.overwrite, "num_workers": args.num_workers, "reporter": ctx.reporter}
    if args.convert_kind == "msd":
        result = convert_msd(ctx.workspace, args.source, args.dataset_id, args.name, **common)
    elif args.convert_kind == "nnunet-v1":
        result = convert_nnunet_v1(ctx.workspace, args.source, args.dataset_id, args.name, **common)
    else:
        result = convert_folders(
            ctx.workspace, args.images, args.labels, args.name, args.dataset_id,
            channel_names=args.channel_names, label_names=args.label_names, label_map=args.map_labels,
            ending=args.ending, image_suffix=args.image_suffix, label_suffix=args.label_suffix,
            test_images=args.test_images, test_image_suffix=args.test_image_suffix,
            ignore_unmatched=args.ignore_unmatched, **common,
        )
    log.info("Wrote %s (%d training, %d test cases). Check it with `autosegnet verify %s`.",
             result.folder, result.num_training, result.num_test, result.folder.name)
    return 0
