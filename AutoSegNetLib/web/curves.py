"""Training curves for the page: the engine's per-epoch history as SVG polylines (no chart library needed).

Two small charts: the losses (train, validation) scaled to their own range, and the pseudo-Dice per label name on
[0, 1]. Each chart is one small SVG document (a ``<polyline>`` per series) that the page shows as it is; only
numbers and escaped names go into it.
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass

#: Series colours (validation loss and Dice labels cycle through the later ones).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclass(frozen=True)
class Series:
    """One curve: its name, colour and SVG points (``"x,y x,y ..."`` in the chart's pixel space)."""

    name: str
    colour: str
    points: str


@dataclass(frozen=True)
class Chart:
    """A chart's title, its value range (``low``..``high``, shown on the axis) and its curves."""

    title: str
    low: float
    high: float
    series: list[Series]


def training_charts(columns: dict[str, list[float]], width: int = 340, height: int = 120) -> list[dict]:
    """``[loss chart, Dice chart]`` as plain dicts for the page's state, from ``curve_columns`` output
    (``{"epoch": [...], "train_loss": [...], "val_loss": [...], "Dice <name>": [...]}``). Charts without a
    finite value are left out."""
    epochs = columns.get("epoch", [])
    losses = {k: v for k, v in columns.items() if k in ("train_loss", "val_loss")}
    dice = {k[len("Dice "):]: v for k, v in columns.items() if k.startswith("Dice ")}
    charts = [_chart("Loss", epochs, losses, None, width, height), _chart("Pseudo-Dice", epochs, dice, (0.0, 1.0),
                                                                         width, height)]
    return [{**asdict(chart), "svg": svg(chart, width, height)} for chart in charts if chart is not None]


def svg(chart: Chart, width: int, height: int) -> str:
    """The chart as an SVG element: a frame and one polyline per series (names escaped, in ``<title>``)."""
    lines = "".join(f'<polyline points="{s.points}" fill="none" stroke="{s.colour}" stroke-width="1.5">'
                    f"<title>{html.escape(s.name)}</title></polyline>" for s in chart.series)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="-2 -2 {width + 4} {height + 4}"><rect x="-1" y="-1" width="{width + 2}" '
            f'height="{height + 2}" fill="none" stroke="#ccc"/>{lines}</svg>')


def _chart(title: str, epochs: list[float], curves: dict[str, list[float]], fixed: tuple[float, float] | None,
           width: int, height: int) -> Chart | None:
    values = [v for column in curves.values() for v in column if math.isfinite(v)]
    if not values or not epochs:
        return None
    low, high = fixed or (min(values), max(values))
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    first, last = epochs[0], epochs[-1] if epochs[-1] > epochs[0] else epochs[0] + 1

    def point(epoch: float, value: float) -> str:
        x = (epoch - first) / (last - first) * width
        y = height - (min(max(value, low), high) - low) / (high - low) * height
        return f"{x:.1f},{y:.1f}"

    series = []
    for index, (name, column) in enumerate(curves.items()):
        points = " ".join(point(e, v) for e, v in zip(epochs, column) if math.isfinite(v))
        if points:
            series.append(Series(name.replace("_", " "), COLOURS[index % len(COLOURS)], points))
    return Chart(title, round(low, 4), round(high, 4), series)
