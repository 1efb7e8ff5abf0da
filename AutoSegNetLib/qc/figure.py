"""Lay out an overlay figure with Pillow: a header line, titled panels side by side, a legend of label names.

Layout, top to bottom (all sizes in pixels, ``MARGIN`` around everything)::

    header text (case, plane)
    panel title      panel title
    [panel 1]  GAP   [panel 2]
    [swatch] name   [swatch] name   ...   (legend, wrapped to the figure width)

:func:`panel_origins` gives where each panel's top-left pixel lands, so callers and tests can find it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MARGIN = 8
GAP = 8
FONT_SIZE = 14
LINE_HEIGHT = 20
SWATCH = 12
LEGEND_MIN_WIDTH = 320
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)


@dataclass(frozen=True)
class Panel:
    """One picture ``(H, W, 3)`` uint8 with its title."""

    title: str
    pixels: np.ndarray


@dataclass(frozen=True)
class LegendEntry:
    """One label in the legend: its name and RGB colour."""

    name: str
    colour: tuple[int, int, int]


def panel_origins(panels: Sequence[Panel]) -> list[tuple[int, int]]:
    """``(x, y)`` of each panel's top-left pixel in the figure."""
    top = MARGIN + 2 * LINE_HEIGHT
    origins, left = [], MARGIN
    for panel in panels:
        origins.append((left, top))
        left += panel.pixels.shape[1] + GAP
    return origins


def compose_figure(header: str, panels: Sequence[Panel], legend: Sequence[LegendEntry]) -> Image.Image:
    """The whole figure as an RGB Pillow image (see the module docstring for the layout)."""
    if not panels:
        raise ValueError("a figure needs at least one panel")
    font = _font()
    panels_width = sum(p.pixels.shape[1] for p in panels) + GAP * (len(panels) - 1)
    panels_height = max(p.pixels.shape[0] for p in panels)
    width = 2 * MARGIN + max(panels_width, LEGEND_MIN_WIDTH, _text_width(header, font))
    rows = _legend_rows(legend, width - 2 * MARGIN, font)
    height = 2 * MARGIN + 2 * LINE_HEIGHT + panels_height + (GAP + len(rows) * LINE_HEIGHT if rows else 0)
    figure = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(figure)
    draw.text((MARGIN, MARGIN), header, fill=TEXT, font=font)
    for panel, (x, y) in zip(panels, panel_origins(panels)):
        draw.text((x, y - LINE_HEIGHT), panel.title, fill=TEXT, font=font)
        figure.paste(Image.fromarray(np.ascontiguousarray(panel.pixels), "RGB"), (x, y))
    _draw_legend(draw, rows, MARGIN + 2 * LINE_HEIGHT + panels_height + GAP, font)
    return figure


def _legend_rows(legend: Sequence[LegendEntry], width: int, font: ImageFont.ImageFont
                 ) -> list[list[tuple[int, LegendEntry]]]:
    """Legend entries wrapped into rows of equal-width columns: ``[[(x offset, entry), ...], ...]``."""
    if not legend:
        return []
    column = SWATCH + 6 + max(_text_width(e.name, font) for e in legend) + 16
    per_row = max(1, width // column)
    return [[(i * column, entry) for i, entry in enumerate(legend[start:start + per_row])]
            for start in range(0, len(legend), per_row)]


def _draw_legend(draw: ImageDraw.ImageDraw, rows: list[list[tuple[int, LegendEntry]]], top: int,
                 font: ImageFont.ImageFont) -> None:
    for row_index, row in enumerate(rows):
        y = top + row_index * LINE_HEIGHT
        for offset, entry in row:
            x = MARGIN + offset
            swatch_top = y + (LINE_HEIGHT - SWATCH) // 2
            draw.rectangle((x, swatch_top, x + SWATCH - 1, swatch_top + SWATCH - 1), fill=entry.colour)
            draw.text((x + SWATCH + 6, y + 2), entry.name, fill=TEXT, font=font)


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    """Pillow's bundled font at ``FONT_SIZE`` (its small bitmap font where Pillow lacks FreeType)."""
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (TypeError, ValueError, OSError):
        return ImageFont.load_default()


def _text_width(text: str, font: ImageFont.ImageFont) -> int:
    return int(np.ceil(font.getlength(text)))
