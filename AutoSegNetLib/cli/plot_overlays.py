"""``autosegnet plot-overlays``: one PNG per case (the slice with the most foreground, labels drawn on the image)
and an ``index.html`` gallery, for checking a dataset or predictions by eye (nnU-Net's ``plot_overlay_pngs``).

Cases: ``-d DATASET`` (the training cases of a raw dataset) or ``-i IMAGES -l LABELS`` (``<case>_0000<ending>``
images and ``<case><ending>`` label maps; with ``-i`` alone the error says what is missing). ``--pred PREDICTIONS``
adds a second panel with the predictions as contours and Dice per label in the gallery; then only the cases with
a prediction are drawn. Writes ``OUT/<case>.png``, ``OUT/index.html`` and ``OUT/overlays.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from AutoSegNetLib.cli.arguments import add_ignored, add_refused
from AutoSegNetLib.cli.convert import default_workers
from AutoSegNetLib.dataset import DatasetJson, RawDataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.qc import LabelNames, OverlayOptions, OverlayStyle, dataset_cases, folder_cases, plot_overlays
from AutoSegNetLib.qc.gallery import INDEX_NAME

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--dataset", help="raw dataset: ID, name (4, Dataset004_Hippocampus, Hippocampus) or "
                        "folder; draws its training cases")
    parser.add_argument("-i", "--images", type=Path, help="image folder (<case>_0000<ending>, ...); needs -l")
    parser.add_argument("-l", "--labels", type=Path, help="label map (or prediction) folder <case><ending>, with -i")
    parser.add_argument("--pred", "--predictions", dest="predictions", type=Path, help="prediction folder "
                        "<case><ending> to compare with the labels (second panel, Dice per label)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the PNGs and index.html")
    parser.add_argument("--dataset-json", type=Path, help="dataset.json for label and channel names with -i/-l "
                        "(default: LABELS/dataset.json or LABELS/../dataset.json if present)")
    parser.add_argument("--channel", "-channel_idx", type=int, default=0,
                        help="channel file to show (0 = _0000) (default: 0)")
    parser.add_argument("--alpha", "-overlay_intensity", type=float, default=OverlayStyle.alpha,
                        help="opacity of the label fills, 0..1 (default: %(default)s)")
    parser.add_argument("--size", type=int, default=OverlayStyle.min_size,
                        help="enlarge small slices until their longer side has this many pixels (default: %(default)s)")
    parser.add_argument("--ct-window", type=float, nargs=2, metavar=("LOW", "HIGH"), default=OverlayStyle.ct_window,
                        help="intensity window (HU) of channels named CT (default: %(default)s)")
    add_ignored(parser, "--use_raw", nargs=0, reason="plot-overlays always draws the raw images")
    add_refused(parser, "-p", "-c", message=lambda v: "nnU-Net's -p PLANS -c CONFIG draws preprocessed data; "
                "plot-overlays draws the raw dataset (leave them out); to compare predictions use --pred FOLDER")
    parser.add_argument("-np", "--num-workers", type=int, default=default_workers(),
                        help="worker processes, one case each (default: %(default)s)")


def run(args: argparse.Namespace, ctx) -> int:
    cases, dataset_json, title = _cases(args, ctx)
    style = OverlayStyle(alpha=args.alpha, min_size=args.size, max_size=max(OverlayStyle.max_size, args.size),
                         ct_window=tuple(args.ct_window))
    options = OverlayOptions(
        style=style,
        labels=LabelNames.from_dataset_json(dataset_json) if dataset_json else LabelNames(),
        channel=args.channel,
        channel_names=tuple(dataset_json.channel_names.values()) if dataset_json else (),
        reader=dataset_json.overwrite_image_reader_writer if dataset_json else None,
    )
    results = plot_overlays(cases, args.output, options, args.num_workers, ctx.reporter, ctx.stop, title)
    index = args.output / INDEX_NAME
    if len(results) < len(cases):
        log.warning("plot-overlays: STOPPED on request after %d of %d cases; %s lists those.", len(results),
                    len(cases), index)
        ctx.reporter.emit("done", stage="plot-overlays", status="stopped", cases=len(results), total=len(cases),
                          index=str(index))
        return 0
    log.info("plot-overlays: %d PNGs in %s; open %s", len(results), args.output, index)
    ctx.reporter.emit("done", stage="plot-overlays", cases=len(results), total=len(cases), index=str(index))
    return 0


def _cases(args: argparse.Namespace, ctx) -> tuple[list, DatasetJson | None, str]:
    """The cases, the dataset.json giving names (or None) and the gallery's title."""
    if args.dataset and (args.images or args.labels):
        raise AutoSegNetError("Give either -d DATASET or -i IMAGES -l LABELS, not both.")
    if args.dataset:
        path = Path(args.dataset)
        folder = path if (path / "dataset.json").is_file() else ctx.workspace.raw_dataset(args.dataset)
        raw = RawDataset.open(folder)
        return dataset_cases(raw, args.predictions), raw.dataset_json, raw.name
    if not (args.images and args.labels):
        raise AutoSegNetError("Say which cases to draw: -d DATASET, or -i IMAGES together with -l LABELS "
                              f"(got {'-i' if args.images else '-l' if args.labels else 'neither'}).")
    dataset_json = _dataset_json(args.dataset_json, args.labels)
    return folder_cases(args.images, args.labels, args.predictions), dataset_json, args.images.name


def _dataset_json(explicit: Path | None, labels: Path) -> DatasetJson | None:
    if explicit:
        return DatasetJson.load(explicit)
    for candidate in (labels / "dataset.json", labels.parent / "dataset.json"):
        if candidate.is_file():
            log.info("Label names from %s", candidate)
            return DatasetJson.load(candidate)
    return None
