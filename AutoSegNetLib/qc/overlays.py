"""Pure NumPy pieces of an overlay picture: which slice, how to window it, how to draw labels on it.

Axis order follows decision 0001: volumes are ``(Z, Y, X)`` (images ``(C, Z, Y, X)``), spacing ``(z, y, x)`` in
mm. A *plane* is a 2D cut perpendicular to one array axis; its pixels are ``(rows, cols)``:

- axis 0 (``z``, axial): rows = y, cols = x;
- axis 1 (``y``, coronal) and axis 2 (``x``, sagittal): rows = z flipped, so that higher z (superior for the
  usual LPS files) is at the top, and cols = x or y.

Pictures are RGB ``(H, W, 3)`` uint8 arrays. Nothing here reads or writes files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Label colours, cycled by label value (value 1 gets the first): distinct on grey images and for colour-blind
#: readers in the first few entries (Sasha Trubetskoy's list of 20 distinct colours, without white and grey).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128),
)
AXIS_NAMES = ("axial", "coronal", "sagittal")
#: Spacings within this relative difference of the coarsest count as equally coarse (axial wins the tie).
SPACING_TIE_TOLERANCE = 0.01


@dataclass(frozen=True)
class OverlayStyle:
    """How overlays look.

    ``alpha``: opacity of the label fills (0 = invisible, 1 = opaque); ``min_size`` / ``max_size``: the longer side
    of a panel in pixels is enlarged to at least ``min_size`` (by a whole factor, so voxels stay even blocks) and
    shrunk to at most ``max_size``; contour widths are in display pixels; ``percentiles``: the intensity window of
    non-CT images; ``ct_window``: the window (HU) of channels named CT, soft tissue by default (level 40, width 400).
    """

    alpha: float = 0.4
    min_size: int = 256
    max_size: int = 1024
    contour_width: int = 1
    prediction_contour_width: int = 2
    percentiles: tuple[float, float] = (0.5, 99.5)
    ct_window: tuple[float, float] = (-160.0, 240.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}.")
        if self.min_size < 0 or self.max_size < max(1, self.min_size):
            raise ValueError(f"need 0 <= min_size <= max_size, got {self.min_size} and {self.max_size}.")


@dataclass(frozen=True)
class Plane:
    """A cut through a volume: perpendicular to array ``axis`` (0 z, 1 y, 2 x) at ``index`` of ``count``."""

    axis: int
    index: int
    count: int

    @property
    def name(self) -> str:
        """``axial``, ``coronal`` or ``sagittal`` (for identity-direction LPS files)."""
        return AXIS_NAMES[self.axis]


def label_colour(value: int) -> tuple[int, int, int]:
    """The RGB colour of label ``value`` (>= 1), the same in every case and every picture."""
    return PALETTE[(int(value) - 1) % len(PALETTE)]


def colour_hex(colour: tuple[int, int, int]) -> str:
    """``#rrggbb`` of an RGB colour."""
    return "#" + "".join(f"{int(c):02x}" for c in colour)


def slice_axis(spacing: tuple[float, float, float], shape: tuple[int, int, int]) -> int:
    """The array axis to cut across: the one with the coarsest spacing, axial (0) when spacings tie.

    ``spacing`` is ``(z, y, x)`` mm, ``shape`` ``(Z, Y, X)``. 2D images (``Z == 1``) are always cut across axis 0,
    which gives the image itself.
    """
    if shape[0] == 1:
        return 0
    coarsest = max(spacing)
    return next(axis for axis, s in enumerate(spacing) if s >= coarsest * (1 - SPACING_TIE_TOLERANCE))


def foreground_per_slice(seg: np.ndarray, axis: int, ignore_label: int | None = None) -> np.ndarray:
    """Foreground voxels (any label but 0 and ``ignore_label``) per slice across ``axis`` of ``(Z, Y, X)``."""
    foreground = seg != 0
    if ignore_label is not None:
        foreground &= seg != ignore_label
    other_axes = tuple(a for a in range(3) if a != axis)
    return foreground.sum(axis=other_axes)


def choose_plane(seg: np.ndarray, spacing: tuple[float, float, float], fallback: np.ndarray | None = None,
                 ignore_label: int | None = None) -> Plane:
    """The slice with the most foreground in ``seg`` ``(Z, Y, X)`` across :func:`slice_axis`.

    Ties go to the first such slice. When ``seg`` has no foreground, ``fallback`` (e.g. the prediction) decides;
    when neither has any, the middle slice is taken.
    """
    axis = slice_axis(spacing, seg.shape)
    for candidate in (seg, fallback):
        if candidate is None:
            continue
        counts = foreground_per_slice(candidate, axis, ignore_label)
        if counts.any():
            return Plane(axis, int(np.argmax(counts)), seg.shape[axis])
    return Plane(axis, seg.shape[axis] // 2, seg.shape[axis])


def take_plane(volume: np.ndarray, plane: Plane) -> np.ndarray:
    """The ``(..., rows, cols)`` pixels of ``plane`` from ``volume`` ``(..., Z, Y, X)`` (see the module docstring)."""
    cut = np.take(volume, plane.index, axis=volume.ndim - 3 + plane.axis)
    return cut if plane.axis == 0 else cut[..., ::-1, :]


def plane_spacing(spacing: tuple[float, float, float], plane: Plane) -> tuple[float, float]:
    """``(row, col)`` pixel spacing in mm of ``plane`` given the volume's ``(z, y, x)`` spacing."""
    kept = [s for axis, s in enumerate(spacing) if axis != plane.axis]
    return float(kept[0]), float(kept[1])


def display_shape(shape: tuple[int, int], spacing: tuple[float, float], style: OverlayStyle) -> tuple[int, int]:
    """``(H, W)`` display pixels of a ``(rows, cols)`` plane with ``(row, col)`` spacing in mm.

    Pixels become square in mm: the finer spacing is one display pixel, the coarser axis is stretched. Then the
    picture is enlarged by a whole factor until its longer side reaches ``style.min_size``, or shrunk to
    ``style.max_size``.
    """
    finest = min(spacing)
    height, width = shape[0] * spacing[0] / finest, shape[1] * spacing[1] / finest
    longest = max(height, width)
    if longest < style.min_size:
        scale = float(math.ceil(style.min_size / longest))
        scale = min(scale, style.max_size / longest)
    else:
        scale = min(1.0, style.max_size / longest)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_nearest(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``pixels`` ``(rows, cols, ...)`` resampled to ``shape`` ``(H, W)`` by nearest neighbour (labels stay exact)."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * pixels.shape[0] / shape[0]).astype(int), pixels.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * pixels.shape[1] / shape[1]).astype(int), pixels.shape[1] - 1)
    return pixels[rows][:, cols]


def intensity_window(channel: np.ndarray, is_ct: bool, style: OverlayStyle) -> tuple[float, float]:
    """``(low, high)`` intensities mapped to black and white for one channel volume ``(Z, Y, X)``.

    CT channels get ``style.ct_window``; others the ``style.percentiles`` of their finite voxels over the whole
    volume (so every slice of a case is shown alike).
    """
    if is_ct:
        return style.ct_window
    finite = channel[np.isfinite(channel)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, style.percentiles)
    return float(low), float(high)


def to_display_rgb(pixels: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``(C, rows, cols)`` intensities -> ``(rows, cols, 3)`` uint8 through ``window``.

    One channel is grey; three or more are colour (the first three, e.g. RGB(A) photographs).
    """
    low, high = window
    scaled = (np.nan_to_num(pixels.astype(np.float64), nan=low) - low) / max(high - low, 1e-12)
    grey = np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    if grey.shape[0] >= 3:
        return np.moveaxis(grey[:3], 0, -1).copy()
    return np.repeat(grey[0][..., None], 3, axis=-1)


def rgb_window(image: np.ndarray, style: OverlayStyle) -> tuple[float, float]:
    """The window of a colour image ``(C, Z, Y, X)``: 0..255 when its values fit (8-bit photographs keep their
    colours), else the ``style.percentiles`` over all colour channels together (keeps the hue)."""
    colour = image[:3]
    if colour.size and float(np.nanmin(colour)) >= 0 and float(np.nanmax(colour)) <= 255:
        return 0.0, 255.0
    return intensity_window(colour, False, style)


def contour(mask: np.ndarray, width: int) -> np.ndarray:
    """The inner rim of ``mask`` ``(H, W)``, ``width`` pixels wide (the picture's border is not a rim)."""
    if width <= 0 or not mask.any():
        return np.zeros_like(mask)
    inner = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1), iterations=width,
                                   border_value=1)
    return mask & ~inner


def fill_labels(picture: np.ndarray, labels: np.ndarray, values: list[int], alpha: float) -> np.ndarray:
    """``picture`` ``(H, W, 3)`` with each label value of ``labels`` ``(H, W)`` blended in its colour.

    A pixel becomes ``round((1 - alpha) * pixel + alpha * colour)``; other pixels keep their value.
    """
    out = picture.astype(np.float64)
    for value in values:
        mask = labels == value
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(label_colour(value), dtype=np.float64)
    return np.rint(out).astype(np.uint8)


def draw_contours(picture: np.ndarray, labels: np.ndarray, values: list[int], width: int) -> np.ndarray:
    """``picture`` ``(H, W, 3)`` with the rim of each label value of ``labels`` ``(H, W)`` in its full colour."""
    out = picture.copy()
    for value in values:
        out[contour(labels == value, width)] = label_colour(value)
    return out


def reference_panel(picture: np.ndarray, reference: np.ndarray, values: list[int], style: OverlayStyle) -> np.ndarray:
    """The reference picture: semi-transparent fills with full-colour contours, on ``picture`` ``(H, W, 3)``."""
    filled = fill_labels(picture, reference, values, style.alpha)
    return draw_contours(filled, reference, values, style.contour_width)


def prediction_panel(picture: np.ndarray, reference: np.ndarray, prediction: np.ndarray, values: list[int],
                     style: OverlayStyle) -> np.ndarray:
    """The comparison picture: the reference as fills only, the prediction as contours in the same colours.

    Where they agree, each contour hugs the edge of its fill; a contour around grey is a false positive, a fill
    without a contour a false negative.
    """
    filled = fill_labels(picture, reference, values, style.alpha)
    return draw_contours(filled, prediction, values, style.prediction_contour_width)
