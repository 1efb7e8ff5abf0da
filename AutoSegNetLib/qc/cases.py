"""Which cases to draw: from a raw dataset or from an image folder and a label folder, optionally with predictions.

File names follow the engine's conventions: channel images ``<case>_<CCCC><ending>`` (an image folder without
such names is read as one single-channel image per case, ``<case><ending>``, e.g. a folder of photographs),
label maps and predictions ``<case><ending>`` (any supported ending). With predictions, the cases drawn are those
that have one (as ``autosegnet evaluate`` pairs every prediction with its reference).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetLib.dataset.dataset_json import IGNORE_LABEL_NAME, DatasetJson
from AutoSegNetLib.dataset.listing import group_channel_files
from AutoSegNetLib.dataset.raw import RawDataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation.evaluate import common_ending
from AutoSegNetLib.imageio import file_ending, registered_ios
from AutoSegNetLib.layout import UNCERTAINTY_SUFFIX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OverlayCase:
    """One case to draw: its channel image files (channel order), reference label map and optional prediction."""

    name: str
    images: tuple[Path, ...]
    reference: Path
    prediction: Path | None = None


@dataclass(frozen=True)
class LabelNames:
    """Names of label values (``((value, name), ...)``, background left out) and the ignore label, if any."""

    names: tuple[tuple[int, str], ...] = ()
    ignore_label: int | None = None

    @classmethod
    def from_dataset_json(cls, dataset_json: DatasetJson) -> LabelNames:
        """Names of the values in the label files: a label's own value, or for region datasets the value that
        ``regions_class_order`` writes for each region; ``ignore`` keeps its name."""
        names: dict[int, str] = {}
        order = dataset_json.regions_class_order if dataset_json.has_regions else None
        for position, (name, value) in enumerate(dataset_json.foreground_labels.items()):
            if order is not None:
                names[int(order[position])] = name
            elif isinstance(value, int):
                names[value] = name
        if dataset_json.ignore_label is not None:
            names[dataset_json.ignore_label] = IGNORE_LABEL_NAME
        return cls(tuple(sorted(names.items())), dataset_json.ignore_label)

    def name(self, value: int) -> str:
        """The label's name, or ``label <value>`` when it has none."""
        return dict(self.names).get(int(value), f"label {int(value)}")

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(value for value, _ in self.names)


def dataset_cases(raw: RawDataset, predictions: Path | None = None) -> list[OverlayCase]:
    """The training cases of a raw dataset (every one must have its label file), with their predictions."""
    cases = []
    for case in raw.training_cases():
        if case.label is None or not case.label.is_file():
            expected = case.label or raw.folder / "labelsTr" / f"{case.name}{raw.dataset_json.file_ending}"
            raise AutoSegNetError(
                f"Case {case.name!r} of {raw.folder} has no label file {expected}; add it or remove the case's "
                "images (autosegnet verify lists every problem)."
            )
        cases.append(OverlayCase(case.name, case.images, case.label))
    if not cases:
        raise AutoSegNetError(f"{raw.folder} has no training cases (imagesTr is empty or missing).")
    return with_predictions(cases, predictions) if predictions is not None else cases


def folder_cases(images: Path, labels: Path, predictions: Path | None = None) -> list[OverlayCase]:
    """Cases of an image folder paired by name with a label folder (and a prediction folder).

    Every image case needs a label map; the error names each case without one.
    """
    channels = image_cases(images)
    by_case = files_by_case(labels)
    missing = [name for name in channels if name not in by_case]
    if missing:
        shown = ", ".join(repr(name) for name in missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise AutoSegNetError(
            f"{len(missing)} case(s) in {images} have no label map in {labels}: {shown}. Expected e.g. "
            f"{labels / (missing[0] + file_ending(channels[missing[0]][0]))}; add the label maps or remove those "
            "images."
        )
    cases = [OverlayCase(name, files, by_case[name]) for name, files in channels.items()]
    return with_predictions(cases, predictions) if predictions is not None else cases


def image_cases(folder: Path) -> dict[str, tuple[Path, ...]]:
    """``{case: channel files}`` sorted by case: ``<case>_<CCCC><ending>`` files, else one file per case."""
    if not folder.is_dir():
        raise AutoSegNetError(f"Image folder {folder} does not exist.")
    ending = common_ending(folder)
    grouped = group_channel_files(folder, ending)
    if grouped:
        return {name: tuple(channels[i] for i in sorted(channels)) for name, channels in sorted(grouped.items())}
    log.info("No <case>_0000%s names in %s: reading each file as one single-channel case.", ending, folder)
    return {name: (path,) for name, path in sorted(files_by_case(folder).items()) if file_ending(path) == ending}


def files_by_case(folder: Path) -> dict[str, Path]:
    """``{case: file}`` for the image files ``<case><ending>`` in ``folder`` (uncertainty maps and hidden files
    left out); two files of one case with different endings are an error naming both."""
    if not folder.is_dir():
        raise AutoSegNetError(f"Folder {folder} does not exist.")
    endings = {e for cls in registered_ios().values() for e in cls.endings}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        ending = file_ending(path)
        if not path.is_file() or path.name.startswith(".") or ending not in endings:
            continue
        name = path.name[: -len(ending)]
        if name.endswith(UNCERTAINTY_SUFFIX):
            continue
        if name in found:
            raise AutoSegNetError(f"Case {name!r} has two files in {folder}: {found[name].name} and {path.name}; "
                                  "keep one.")
        found[name] = path
    return found


def with_predictions(cases: list[OverlayCase], folder: Path) -> list[OverlayCase]:
    """The cases that have a prediction ``<case><ending>`` in ``folder``, each with it attached."""
    predictions = files_by_case(folder)
    names = {case.name for case in cases}
    strays = sorted(set(predictions) - names)
    if strays:
        log.warning("%d prediction(s) in %s have no case with a reference and are left out: %s", len(strays),
                    folder, ", ".join(strays[:10]) + (", ..." if len(strays) > 10 else ""))
    paired = [OverlayCase(c.name, c.images, c.reference, predictions[c.name]) for c in cases if c.name in predictions]
    if not paired:
        raise AutoSegNetError(f"No prediction in {folder} is named like a case (<case><ending>, e.g. "
                              f"{cases[0].name}{file_ending(cases[0].reference)}).")
    if len(paired) < len(cases):
        log.info("Drawing the %d of %d cases that have a prediction in %s.", len(paired), len(cases), folder)
    return paired
