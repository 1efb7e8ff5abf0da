"""Draw one PNG per case -- the slice with the most foreground, labels as fills and contours -- and a gallery.

For each case: one channel file is read (``channel``); a 3D volume is turned (axis permutation and flips, no
interpolation) into the LPS orientation, so axial planes show anterior at the top and the patient's right on the
left (radiological convention) whatever the file's direction; the plane is chosen by
:func:`~AutoSegNetLib.qc.overlays.choose_plane` from the reference, windowed, resampled so that pixels are square in
mm, and drawn as a *reference* panel (fills + contours); with a prediction a second panel shows the reference fills
with the prediction's contours in the same colours. Per-label voxel counts (whole volume) and, with a prediction,
Dice per label go to ``overlays.json`` and ``index.html`` beside the PNGs (see :mod:`AutoSegNetLib.qc.gallery`).

A stop request (``--stop-file``) is honoured between cases: the PNGs drawn stay and the gallery lists them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation.metrics import overlap_metrics
from AutoSegNetLib.imageio import Geometry, io_for
from AutoSegNetLib.imageio.orientation import Reorientation, is_valid_orientation
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.qc import overlays as ov
from AutoSegNetLib.qc.cases import LabelNames, OverlayCase
from AutoSegNetLib.qc.figure import LegendEntry, Panel, compose_figure
from AutoSegNetLib.qc.gallery import write_gallery
from AutoSegNetLib.utils.atomic import atomic_path
from AutoSegNetLib.utils.stop import StopRequest
from AutoSegNetLib.utils.workers import run_parallel

log = logging.getLogger(__name__)
STAGE = "plot-overlays"
#: Orientation of the arrays drawn: x to the patient's left, y posterior, z superior.
DISPLAY_ORIENTATION = "LPS"


@dataclass(frozen=True)
class OverlayOptions:
    """Everything but the cases: the look, the label names, which channel file to show and how to read it.

    ``channel``: index of the channel file (``_0000`` is 0); ``channel_names``: dataset.json's names by channel
    index (a channel named ``CT`` gets the CT window); ``reader``: a reader/writer name that overrides the choice
    by file ending (dataset.json's ``overwrite_image_reader_writer``).
    """

    style: ov.OverlayStyle = field(default_factory=ov.OverlayStyle)
    labels: LabelNames = field(default_factory=LabelNames)
    channel: int = 0
    channel_names: tuple[str, ...] = ()
    reader: str | None = None

    def is_ct(self) -> bool:
        names = self.channel_names
        return self.channel < len(names) and names[self.channel].strip().upper() == "CT"


@dataclass(frozen=True)
class LabelStats:
    """One label of one case: name, colour, voxels in the reference (and prediction) volume, Dice (None when both
    are empty or without a prediction)."""

    value: int
    name: str
    colour: tuple[int, int, int]
    reference_voxels: int
    prediction_voxels: int | None = None
    dice: float | None = None


@dataclass(frozen=True)
class CaseOverlay:
    """What was drawn for one case: the PNG's file name and pixel size ``(W, H)``, the plane (in the displayed LPS
    orientation), where that slice is in the file (``file_axis`` 0/1/2 = the file's z/y/x array axis, and
    ``file_index``), and the label stats."""

    case: str
    png: str
    size: tuple[int, int]
    plane: ov.Plane
    file_axis: int
    file_index: int
    labels: tuple[LabelStats, ...]
    has_prediction: bool

    @property
    def where(self) -> str:
        """``axial slice z=12 of 35`` (the index in the file's own array axis) or ``2D image``."""
        if self.plane.count == 1:
            return "2D image"
        return f"{self.plane.name} slice {'zyx'[self.file_axis]}={self.file_index} of {self.plane.count}"

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "png": self.png, "width": self.size[0], "height": self.size[1],
                "plane": self.plane.name, "axis": "zyx"[self.file_axis], "slice": self.file_index,
                "slices": self.plane.count, "has_prediction": self.has_prediction,
                "labels": [vars(stats) | {"colour": ov.colour_hex(stats.colour)} for stats in self.labels]}


def plot_overlays(cases: Sequence[OverlayCase], output: str | Path, options: OverlayOptions, num_workers: int = 1,
                  reporter: ProgressReporter | None = None, stop: StopRequest | None = None,
                  title: str = "Overlays") -> list[CaseOverlay]:
    """Draw ``OUT/<case>.png`` for every case, then ``OUT/index.html`` and ``OUT/overlays.json``.

    Returns what was drawn, in the order of ``cases`` (fewer when stopped on request).
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    reporter = reporter or ProgressReporter("none")
    reporter.emit("stage", stage=STAGE, cases=len(cases), workers=num_workers, output=str(output))
    work = functools.partial(plot_case, output=output, options=options)
    drawn: dict[str, CaseOverlay] = {}
    for index, (case, result) in enumerate(run_parallel(work, cases, num_workers, lambda c: c.name, stop), 1):
        drawn[case.name] = result
        reporter.emit("case", stage=STAGE, case=case.name, index=index, total=len(cases),
                      png=str(output / result.png))
    results = [drawn[c.name] for c in cases if c.name in drawn]
    write_gallery(output, title, results)
    return results


def plot_case(case: OverlayCase, output: Path, options: OverlayOptions) -> CaseOverlay:
    """Read one case, draw ``output/<case>.png`` and return what was drawn."""
    image, reference, prediction, geometry = read_case(case, options)
    turn = display_reorientation(geometry, reference.shape)
    if turn is not None:
        geometry = turn.geometry(geometry, reference.shape)
        image, reference = turn.apply(image), turn.apply(reference)
        prediction = turn.apply(prediction) if prediction is not None else None
    plane = ov.choose_plane(reference, geometry.spacing, prediction, options.labels.ignore_label)
    file_axis, file_index = slice_in_file(plane, turn, reference.shape)
    present = present_values(reference, prediction)
    panels = draw_panels(image, reference, prediction, geometry, plane, present, options)
    legend = [LegendEntry(options.labels.name(v), ov.label_colour(v)) for v in present]
    stats = label_stats(reference, prediction, sorted(set(options.labels.values) | set(present)), options.labels)
    result = CaseOverlay(case.name, f"{case.name}.png", (0, 0), plane, file_axis, file_index, stats,
                         prediction is not None)
    figure = compose_figure(f"{case.name}   {result.where}", panels, legend)
    with atomic_path(output / result.png, suffix=".png") as tmp:
        figure.save(tmp, format="PNG")
    return dataclasses.replace(result, size=figure.size)


def display_reorientation(geometry: Geometry, shape: tuple[int, int, int]) -> Reorientation | None:
    """The exact turn of a 3D volume ``(Z, Y, X)`` into :data:`DISPLAY_ORIENTATION`; None when nothing is to be
    turned: 2D images and single-slice volumes, files already in LPS, oblique directions without a clear code."""
    if geometry.is_2d or min(shape) == 1:
        return None
    code = geometry.orientation_code()
    if code == DISPLAY_ORIENTATION or not is_valid_orientation(code):
        return None
    return Reorientation.between(code, DISPLAY_ORIENTATION)


def slice_in_file(plane: ov.Plane, turn: Reorientation | None, shape: tuple[int, int, int]) -> tuple[int, int]:
    """``(array axis, index)`` in the file of the slice ``plane`` cuts from the turned volume of ``shape``."""
    if turn is None:
        return plane.axis, plane.index
    target_itk = 2 - plane.axis  # array axis k is ITK axis 2 - k
    source_itk = turn.source_axis[target_itk]
    index = shape[plane.axis] - 1 - plane.index if turn.flip[target_itk] else plane.index
    return 2 - source_itk, index


def read_case(case: OverlayCase, options: OverlayOptions
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Geometry]:
    """The shown channel file ``(C, Z, Y, X)`` (C = 3 or 4 for colour files), the reference and the prediction
    ``(Z, Y, X)`` and the image geometry; errors name the case and the file."""
    if options.channel >= len(case.images):
        raise AutoSegNetError(f"Case {case.name!r} has {len(case.images)} channel file(s); there is no channel "
                              f"{options.channel} to show. Choose one with --channel 0..{len(case.images) - 1}.")
    try:
        image_file = case.images[options.channel]
        image, geometry = io_for(image_file, options.reader).read_images([image_file])
        reference, _ = io_for(case.reference, options.reader).read_seg(case.reference)
        prediction = io_for(case.prediction, options.reader).read_seg(case.prediction)[0] if case.prediction else None
    except AutoSegNetError as exc:
        raise AutoSegNetError(f"Case {case.name!r}: {exc}") from exc
    _check_shape(case, image_file, image.shape[1:], case.reference, reference.shape)
    if prediction is not None:
        _check_shape(case, case.prediction, prediction.shape, case.reference, reference.shape)
    return image, reference, prediction, geometry


def _check_shape(case: OverlayCase, path: Path, shape: tuple[int, ...], reference: Path,
                 reference_shape: tuple[int, ...]) -> None:
    if tuple(shape) != tuple(reference_shape):
        raise AutoSegNetError(
            f"Case {case.name!r}: {path} has {tuple(shape)} voxels (z, y, x) but its label map {reference} has "
            f"{tuple(reference_shape)}; they must cover the same voxel grid."
        )


def present_values(reference: np.ndarray, prediction: np.ndarray | None) -> list[int]:
    """The label values (background left out) found in the reference or prediction volume ``(Z, Y, X)``, sorted."""
    found = set(np.unique(reference).tolist())
    if prediction is not None:
        found |= set(np.unique(prediction).tolist())
    found.discard(0)
    return sorted(int(v) for v in found)


def draw_panels(image: np.ndarray, reference: np.ndarray, prediction: np.ndarray | None, geometry: Geometry,
                plane: ov.Plane, values: list[int], options: OverlayOptions) -> list[Panel]:
    """The reference panel, and with a prediction the comparison panel, at display size."""
    style = options.style
    colour = image.shape[0] >= 3
    window = ov.rgb_window(image, style) if colour else ov.intensity_window(image[0], options.is_ct(), style)
    pixels = ov.take_plane(image, plane)
    shape = ov.display_shape(pixels.shape[-2:], ov.plane_spacing(geometry.spacing, plane), style)
    picture = ov.resize_nearest(ov.to_display_rgb(pixels, window), shape)
    ref = ov.resize_nearest(ov.take_plane(reference, plane), shape)
    panels = [Panel("reference", ov.reference_panel(picture, ref, values, style))]
    if prediction is not None:
        pred = ov.resize_nearest(ov.take_plane(prediction, plane), shape)
        panels.append(Panel("prediction: contours", ov.prediction_panel(picture, ref, pred, values, style)))
    return panels


def label_stats(reference: np.ndarray, prediction: np.ndarray | None, values: list[int],
                labels: LabelNames) -> tuple[LabelStats, ...]:
    """Voxel counts of each label value over the whole volume, and Dice against the prediction (voxels of the
    ignore label left out)."""
    valid = reference != labels.ignore_label if labels.ignore_label is not None else None
    stats = []
    for value in values:
        ref = reference == value
        common = dict(value=value, name=labels.name(value), colour=ov.label_colour(value),
                      reference_voxels=int(np.count_nonzero(ref)))
        if prediction is None or value == labels.ignore_label:
            stats.append(LabelStats(**common))
            continue
        metrics = overlap_metrics(ref, prediction == value, valid)
        dice = None if math.isnan(metrics["Dice"]) else float(metrics["Dice"])
        stats.append(LabelStats(**common, prediction_voxels=int(np.count_nonzero(prediction == value)), dice=dice))
    return tuple(stats)
