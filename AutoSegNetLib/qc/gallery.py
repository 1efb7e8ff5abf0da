"""``index.html``: every case's overlay PNG to scroll through, with its slice and per-label numbers.

Per case: the name, the plane and slice index, and a table of labels (colour, name, reference voxels over the
whole volume; with predictions also predicted voxels and Dice). With predictions, the top of the page lists the
mean Dice per label over the cases. Links are relative (``<case>.png`` beside ``index.html``), so the folder can
be moved or zipped. ``overlays.json`` holds the same facts for scripts.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from AutoSegNetLib.utils.atomic import atomic_path, write_json

if TYPE_CHECKING:
    from AutoSegNetLib.qc.plot import CaseOverlay, LabelStats

INDEX_NAME = "index.html"
JSON_NAME = "overlays.json"
_STYLE = """
body { background: #181818; color: #e8e8e8; font-family: sans-serif; margin: 1.5em; }
a { color: #8cc8ff; }
section { margin: 2em 0; padding-top: 1em; border-top: 1px solid #444; }
img { max-width: 100%; height: auto; image-rendering: pixelated; }
table { border-collapse: collapse; margin-top: .5em; }
th, td { padding: 2px 10px; text-align: right; border-bottom: 1px solid #333; }
th:first-child, td:first-child, td.name { text-align: left; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: middle; }
nav a { margin-right: .8em; }
"""


def write_gallery(folder: Path, title: str, results: Sequence[CaseOverlay]) -> Path:
    """Write ``folder/index.html`` and ``folder/overlays.json`` for ``results``; returns the HTML file."""
    write_json(folder / JSON_NAME, {"title": title, "cases": [r.to_dict() for r in results]})
    target = folder / INDEX_NAME
    with atomic_path(target, suffix=".html") as tmp:
        tmp.write_text(gallery_html(title, results), encoding="utf-8")
    return target


def gallery_html(title: str, results: Sequence[CaseOverlay]) -> str:
    """The page (see the module docstring)."""
    with_prediction = any(r.has_prediction for r in results)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{_e(title)}</title>",
        f"<style>{_STYLE}</style></head><body>", f"<h1>{_e(title)}</h1>",
        f"<p>{len(results)} case(s). Each picture shows the slice with the most reference foreground: the reference "
        "as coloured fills with contours" + ("; beside it the prediction as contours in the same colours over the "
                                             "reference fills" if with_prediction else "") + ".</p>",
    ]
    if with_prediction:
        parts.append(_mean_dice_table(results))
    parts.append("<nav>" + " ".join(f'<a href="#case-{i}">{_e(r.case)}</a>' for i, r in enumerate(results)) + "</nav>")
    parts.extend(_case_section(r, f"case-{i}") for i, r in enumerate(results))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _case_section(result: CaseOverlay, anchor: str) -> str:
    width, height = result.size
    link = quote(result.png)
    return "\n".join([
        f'<section id="{anchor}">', f"<h2>{_e(result.case)}</h2>", f"<p>{_e(result.where)}</p>",
        f'<a href="{link}"><img src="{link}" width="{width}" height="{height}" loading="lazy" '
        f'alt="{_e(result.case)} overlay"></a>',
        _label_table(result.labels, result.has_prediction), "</section>",
    ])


def _label_table(labels: Sequence[LabelStats], with_prediction: bool) -> str:
    if not labels:
        return "<p>No labels in this case.</p>"
    head = "<tr><th>label</th><th>value</th><th>reference voxels</th>"
    head += "<th>prediction voxels</th><th>Dice</th></tr>" if with_prediction else "</tr>"
    rows = [head]
    for stats in labels:
        row = f'<tr><td class="name">{_swatch(stats.colour)}{_e(stats.name)}</td><td>{stats.value}</td>'
        row += f"<td>{stats.reference_voxels}</td>"
        if with_prediction:
            predicted = "" if stats.prediction_voxels is None else str(stats.prediction_voxels)
            row += f"<td>{predicted}</td><td>{_dice(stats.dice)}</td>"
        rows.append(row + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _mean_dice_table(results: Sequence[CaseOverlay]) -> str:
    """Mean Dice per label over the cases where it is defined (reference or prediction not empty)."""
    per_label: dict[int, list[float]] = {}
    names: dict[int, LabelStats] = {}
    for result in results:
        for stats in result.labels:
            names.setdefault(stats.value, stats)
            if stats.dice is not None:
                per_label.setdefault(stats.value, []).append(stats.dice)
    rows = ["<tr><th>label</th><th>mean Dice</th><th>cases</th></tr>"]
    for value, stats in sorted(names.items()):
        dices = per_label.get(value, [])
        mean = sum(dices) / len(dices) if dices else None
        rows.append(f'<tr><td class="name">{_swatch(stats.colour)}{_e(stats.name)}</td><td>{_dice(mean)}</td>'
                    f"<td>{len(dices)}</td></tr>")
    return "<h2>Mean Dice</h2><table>" + "".join(rows) + "</table>"


def _swatch(colour: tuple[int, int, int]) -> str:
    return f'<span class="swatch" style="background: rgb{tuple(colour)}"></span>'


def _dice(value: float | None) -> str:
    return "&ndash;" if value is None or math.isnan(value) else f"{value:.3f}"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
