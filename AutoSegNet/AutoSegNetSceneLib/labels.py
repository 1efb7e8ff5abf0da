"""Label names <-> integer label values, stable across cases and retraining rounds, and their colours.

Rules (the user guide documents them):
- a label is identified by its segment name (surrounding spaces ignored, case kept);
- the first time a name is seen it gets the next free value (1, 2, ...); background is 0 and never listed;
- a case that lacks a segment gets an empty label for it: values never shift because of a missing segment;
- renaming a segment in one case makes it a new label; :meth:`LabelTable.rename` renames a label everywhere
  and keeps its value; :meth:`LabelTable.remove` drops a label and renumbers the ones after it (a model
  trained before that then has different values, so it is an explicit user action); segments with a removed
  name are ignored from then on (:meth:`LabelTable.restore` takes a name back).
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Iterable

from AutoSegNetLib.errors import AutoSegNetError

BACKGROUND = "background"


def normalise_name(name: str) -> str:
    """The label name a segment name stands for (surrounding spaces removed)."""
    return " ".join(str(name).split())


class LabelTable:
    """Ordered mapping label name -> value (1..N, consecutive)."""

    def __init__(self, values: dict[str, int] | None = None, ignored: Iterable[str] = ()) -> None:
        self._values: dict[str, int] = {}
        self.ignored: list[str] = sorted({normalise_name(n) for n in ignored})
        for name, value in sorted((values or {}).items(), key=lambda item: item[1]):
            self._values[normalise_name(name)] = int(value)
        self._check()

    def _check(self) -> None:
        if sorted(self._values.values()) != list(range(1, len(self._values) + 1)):
            raise AutoSegNetError(f"Label values must be 1..N without gaps, got {self._values}.")
        if BACKGROUND in self._values:
            raise AutoSegNetError(f"{BACKGROUND!r} is label 0 and cannot be a segment name; rename that segment.")

    # ----- queries ------------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return normalise_name(name) in self._values

    def __len__(self) -> int:
        return len(self._values)

    def value(self, name: str) -> int:
        """The value of a label name; KeyError if unknown."""
        return self._values[normalise_name(name)]

    def names(self) -> list[str]:
        """Label names in value order."""
        return list(self._values)

    def as_dict(self) -> dict[str, int]:
        """``{name: value}`` in value order (without background)."""
        return dict(self._values)

    def dataset_labels(self) -> dict[str, int]:
        """The ``labels`` field of dataset.json: background first."""
        return {BACKGROUND: 0, **self._values}

    # ----- changes --------------------------------------------------------------------------------------
    def add_names(self, names: Iterable[str]) -> list[str]:
        """Give every unknown name the next value; returns the names that were new."""
        added = []
        for name in names:
            name = normalise_name(name)
            if not name:
                raise AutoSegNetError("A segment has an empty name; name every segment before adding the case.")
            if name == BACKGROUND:
                raise AutoSegNetError(f"A segment is named {BACKGROUND!r}, which is label 0; rename the segment.")
            if name not in self._values and name not in self.ignored:
                self._values[name] = len(self._values) + 1
                added.append(name)
        return added

    def rename(self, old: str, new: str) -> None:
        """Rename a label, keeping its value."""
        old, new = normalise_name(old), normalise_name(new)
        if old not in self._values:
            raise AutoSegNetError(f"There is no label {old!r}; labels: {', '.join(self._values) or 'none'}.")
        if new in self._values:
            raise AutoSegNetError(f"A label {new!r} already exists (value {self._values[new]}).")
        self._values = {new if k == old else k: v for k, v in self._values.items()}
        self._check()

    def remove(self, name: str) -> None:
        """Drop a label (its segments are ignored from now on); the labels after it move down by one."""
        name = normalise_name(name)
        if name not in self._values:
            raise AutoSegNetError(f"There is no label {name!r}.")
        names = [n for n in self._values if n != name]
        self._values = {n: i + 1 for i, n in enumerate(names)}
        self.ignored = sorted({*self.ignored, name})

    def restore(self, name: str) -> None:
        """Stop ignoring a removed name; it gets the next free value."""
        name = normalise_name(name)
        self.ignored = [n for n in self.ignored if n != name]
        self.add_names([name])

    # ----- persistence -----------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"labels": self._values, "ignored": self.ignored})

    @classmethod
    def from_json(cls, text: str | None) -> LabelTable:
        data = json.loads(text) if text else {}
        return cls(data.get("labels", {}), data.get("ignored", ()))


def label_color(value: int) -> tuple[float, float, float]:
    """A colour (RGB in 0..1) for a label value, stable across rounds and distinct from its neighbours.

    Hues step by the golden angle so consecutive labels are far apart on the colour wheel; saturation and
    brightness alternate over three levels so that labels whose hues come close again still differ.
    """
    if value <= 0:
        return (0.0, 0.0, 0.0)
    hue = ((value - 1) * 0.618033988749895 + 0.05) % 1.0
    saturation = (0.75, 0.55, 0.95)[(value - 1) % 3]
    brightness = (0.95, 0.75, 0.85)[((value - 1) // 3) % 3]
    return colorsys.hsv_to_rgb(hue, saturation, brightness)
