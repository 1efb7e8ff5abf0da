"""The ``postprocessing.json`` rules and applying them to one label map (pure NumPy/SciPy: no evaluation, no I/O).

Components are connected through faces, edges and corners (full connectivity). The file::

    {"format": "autosegnet-postprocessing", "version": 1,
     "steps": [{"operation": "keep_largest_component", "labels": [1, 2]}, ...],
     "dice_before": {"foreground_mean": ..., "1": ...}, "dice_after": {...}, "num_cases": n}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import POSTPROCESSING_FILE

POSTPROCESSING_FORMAT = "autosegnet-postprocessing"
POSTPROCESSING_VERSION = 1
KEEP_LARGEST = "keep_largest_component"


def keep_largest_component(segmentation: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Copy of ``segmentation`` where voxels with a value in ``labels`` that are outside the largest connected
    component of those voxels become background (0)."""
    mask = np.isin(segmentation, list(labels))
    out = segmentation.copy()
    if not mask.any():
        return out
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    components, count = ndimage.label(mask, structure=structure)
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        out[mask & (components != int(np.argmax(sizes)))] = 0
    return out


def apply_postprocessing(segmentation: np.ndarray, rules: dict[str, Any]) -> np.ndarray:
    """Apply the steps of a ``postprocessing.json`` to a label map ``(Z, Y, X)``."""
    check_rules(rules)
    for step in rules["steps"]:
        segmentation = keep_largest_component(segmentation, step["labels"])
    return segmentation


def check_rules(rules: dict[str, Any], source: str = POSTPROCESSING_FILE) -> None:
    """Raise a clear error for a postprocessing file this engine cannot apply."""
    if not isinstance(rules, dict) or rules.get("format") != POSTPROCESSING_FORMAT:
        raise AutoSegNetError(f"{source} is not an AutoSegNet postprocessing file (format {POSTPROCESSING_FORMAT!r}).")
    if rules.get("version") != POSTPROCESSING_VERSION:
        raise AutoSegNetError(
            f"{source}: version {rules.get('version')!r} is not supported (this engine reads {POSTPROCESSING_VERSION})."
        )
    for index, step in enumerate(rules.get("steps", [])):
        if step.get("operation") != KEEP_LARGEST or not isinstance(step.get("labels"), list):
            raise AutoSegNetError(f"{source}: step {index} {step!r} is not a known postprocessing step.")
