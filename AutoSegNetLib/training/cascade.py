"""The cascade between ``3d_lowres`` and ``3d_cascade_fullres``: the low-resolution stage's cross-validation
predictions, where they are written, how they are read and when a cascade fold may start.

nnU-Net's design: the full-resolution stage takes the low-resolution segmentation as extra one-hot input channels
(one per label value of :func:`~AutoSegNetLib.inference.labels.cascade_label_values`). For a training case that
segmentation must come from a ``3d_lowres`` model that never saw the case, so each ``3d_lowres`` fold's final
validation writes the prediction of each case it held out, brought onto the next stage's preprocessed voxel grid
(transposed axes, cropped to the non-zero box, the next stage's spacing), to::

    results/<Dataset>/AutoSegNet__<plans>__3d_lowres/predicted_next_stage/3d_cascade_fullres/<case>.npy  (z, y, x) int16
                                                                                         /<case>.json  fold, shape

The ``.json`` is written last and marks the case complete. ``3d_lowres`` fold ``all`` writes none (it trained on
every case). A cascade fold starts only when every case it trains and validates on has such a prediction
(:func:`require_stage_predictions` names the ``3d_lowres`` folds to train otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.labels import one_hot
from AutoSegNetLib.layout import PREDICTED_NEXT_STAGE
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans
from AutoSegNetLib.preprocessing.cropping import crop_to_nonzero, slices_of
from AutoSegNetLib.preprocessing.resampling import resample_seg
from AutoSegNetLib.preprocessing.storage import PreprocessedDataset
from AutoSegNetLib.utils.atomic import atomic_path, read_json, write_json

log = logging.getLogger(__name__)

_SHOWN = 8


def stage_predictions_folder(lowres_model_folder: Path, next_stage: str) -> Path:
    """``<lowres model folder>/predicted_next_stage/<next_stage>/``."""
    return Path(lowres_model_folder) / PREDICTED_NEXT_STAGE / next_stage


@dataclass(frozen=True)
class PreviousStage:
    """What a cascade stage reads from its low-resolution stage: the ``configuration`` (``3d_lowres``), its model
    folder, the folder of its cross-validation predictions and the label values one-hot encoded as inputs."""

    configuration: str
    model_folder: Path
    predictions: Path
    label_values: tuple[int, ...]


@dataclass(frozen=True)
class NextStage:
    """Where a low-resolution fold's validation writes its predictions for a cascade stage: the stage's
    ``configuration`` and plan, its preprocessed cases (their grids) and the output folder."""

    configuration: str
    plan: ConfigurationPlan
    preprocessed: Path
    predictions: Path


# ----- stored predictions --------------------------------------------------------------------------------
def save_stage_prediction(folder: Path, case: str, segmentation: np.ndarray, fold: str) -> None:
    """Write one case's label map ``(z, y, x)`` (int16) and then its record (``fold``, ``shape``), atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{case}.npy", suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(segmentation, dtype=np.int16))
    write_json(folder / f"{case}.json", {"fold": str(fold), "shape": [int(n) for n in segmentation.shape]})


def stage_prediction_record(folder: Path, case: str) -> dict[str, Any] | None:
    """The record of a complete stored prediction (``{"fold", "shape"}``), or None when there is none."""
    record, array = Path(folder) / f"{case}.json", Path(folder) / f"{case}.npy"
    if not (record.is_file() and array.is_file()):
        return None
    return read_json(record)


def load_stage_prediction(folder: Path, case: str, shape: Sequence[int], mmap: bool = True) -> np.ndarray:
    """The stored label map ``(z, y, x)`` int16 of ``case``; an error naming the fix when it is missing or was
    made for another preprocessing of the case (its shape differs from ``shape``)."""
    record = stage_prediction_record(folder, case)
    if record is None:
        raise AutoSegNetError(
            f"No low-resolution prediction of case {case!r} in {folder}. Train (or validate) the 3d_lowres fold "
            "that holds it out; see `autosegnet train ... 3d_cascade_fullres` for the list."
        )
    array = np.load(Path(folder) / f"{case}.npy", mmap_mode="r" if mmap else None)
    if list(array.shape) != [int(n) for n in shape]:
        raise AutoSegNetError(
            f"{Path(folder) / f'{case}.npy'} has shape {list(array.shape)} but case {case!r} is preprocessed to "
            f"{[int(n) for n in shape]}: it was predicted before the data were preprocessed again. Write it anew "
            f"with `autosegnet train DATASET 3d_lowres {record.get('fold')} --validate-only`."
        )
    return array


# ----- onto the next stage's grid ------------------------------------------------------------------------
def raw_prediction_to_stage(segmentation: np.ndarray, properties: dict[str, Any], plans: Plans,
                            plan: ConfigurationPlan, image: np.ndarray | None = None) -> np.ndarray:
    """A label map ``(Z, Y, X)`` on the raw image's grid -> ``(z, y, x)`` int16 on the grid the case was
    preprocessed to (``properties`` of that preprocessed case): transposed, cropped to the non-zero box,
    background outside the non-zero mask of ``image`` ``(C, Z, Y, X)`` set to -1, resampled as a segmentation
    (one-hot, ``plan.resampling.order_seg``) -- exactly what prediction does to a cascade's lowres segmentation.
    Without ``image`` that background stays 0, which can move a label boundary by a voxel at the mask's edge."""
    forward = list(properties["transpose_forward"])
    transposed = np.asarray(segmentation).transpose(forward)
    if list(transposed.shape) != [int(n) for n in properties["shape_before_cropping"]]:
        raise AutoSegNetError(
            f"The low-resolution prediction has shape {list(np.shape(segmentation))} but the image was "
            f"{properties['original_shape']}; it is not a prediction of this case."
        )
    if image is None:
        cropped = transposed[slices_of(properties["bbox"])]
    else:
        _, cropped, _, bbox = crop_to_nonzero(np.asarray(image).transpose([0, *[a + 1 for a in forward]]), transposed)
        if bbox != properties["bbox"]:
            raise AutoSegNetError(f"The image's non-zero box {bbox} differs from the preprocessed case's "
                                  f"{properties['bbox']}: the image changed since preprocessing; preprocess again.")
    r = plan.resampling
    return resample_seg(cropped, properties["shape_after_resampling"], properties["spacing"],
                        properties["spacing_after_resampling"], r.order_seg, r.order_z_anisotropic,
                        r.anisotropy_threshold)


def preprocessed_prediction_to_stage(segmentation: np.ndarray, properties: dict[str, Any],
                                     stage_properties: dict[str, Any], plan: ConfigurationPlan) -> np.ndarray:
    """A label map ``(z, y, x)`` on the low-resolution preprocessed grid (``properties``) -> the next stage's
    grid (``stage_properties``); both were cropped by the same box, so only the spacing changes."""
    if properties["bbox"] != stage_properties["bbox"]:
        raise AutoSegNetError("The low-resolution and the cascade stage's preprocessing cropped this case "
                              "differently; preprocess both configurations again.")
    r = plan.resampling
    return resample_seg(np.maximum(segmentation, 0), stage_properties["shape_after_resampling"],
                        properties["spacing_after_resampling"], stage_properties["spacing_after_resampling"],
                        r.order_seg, r.order_z_anisotropic, r.anisotropy_threshold)


# ----- training input ------------------------------------------------------------------------------------
def previous_stage_channels(segmentation: np.ndarray, label_values: Sequence[int]) -> np.ndarray:
    """The extra input channels ``(K, *S)`` float32: one-hot of ``segmentation`` ``(*S)`` for ``label_values``."""
    return one_hot(np.asarray(segmentation), label_values)


class ChannelStack:
    """Arrays ``(C_i, *S)`` seen as one ``(sum C_i, *S)`` array for the indexing a patch sampler does
    (``stack[:, ...]``), so memory-mapped parts are read only where the patch is."""

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self.arrays = list(arrays)
        self.shape = (sum(a.shape[0] for a in self.arrays), *self.arrays[0].shape[1:])
        self.ndim = len(self.shape)
        self.dtype = self.arrays[0].dtype

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        if not index or index[0] != slice(None):
            raise IndexError("ChannelStack supports indexing with every channel selected ([:, ...]) only.")
        return np.concatenate([np.asarray(a[index]) for a in self.arrays])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.concatenate([np.asarray(a) for a in self.arrays])
        return out if dtype is None else out.astype(dtype)


class PreviousStageCases:
    """Preprocessed cases whose label map carries the low-resolution prediction as a second channel:
    ``load_case`` gives ``(data (C, z, y, x), seg (2, z, y, x) [labels, lowres prediction], properties)``."""

    def __init__(self, dataset: PreprocessedDataset, predictions: Path) -> None:
        self.dataset = dataset
        self.predictions = Path(predictions)

    def load_case(self, name: str) -> tuple[np.ndarray, ChannelStack | None, dict[str, Any]]:
        data, seg, properties = self.dataset.load_case(name)
        previous = load_stage_prediction(self.predictions, name, data.shape[1:])
        if seg is None:
            return data, None, properties
        return data, ChannelStack([seg, previous[None]]), properties


# ----- may a cascade fold start? --------------------------------------------------------------------------
def require_stage_predictions(previous: PreviousStage, cases: Sequence[str], splits: list[dict] | None,
                              dataset_name: str, configuration: str, fold: str) -> None:
    """Refuse (with the ``3d_lowres`` folds to train) unless every case of ``cases`` has a stored prediction."""
    missing = [c for c in cases if stage_prediction_record(previous.predictions, c) is None]
    if not missing:
        return
    lowres = previous.configuration
    holding = {c: i for i, f in enumerate(splits or []) for c in f["val"]}
    folds = sorted({holding[c] for c in missing if c in holding})
    orphans = sorted(c for c in missing if c not in holding)
    why = (f"Fold all of {configuration} trains on every case, so it needs the {lowres} cross-validation "
           f"prediction of every case, made by the {lowres} fold that held the case out; the {lowres} 'all' model "
           "cannot stand in, as it trained on every case and its predictions of them would be unrealistically good."
           if fold == "all" else
           f"{configuration} fold {fold} takes as input the {lowres} segmentation of each case it trains and "
           f"validates on, predicted by the {lowres} fold that held the case out (cross-validation).")
    parts = [f"Cannot train {configuration} fold {fold} of {dataset_name} yet. {why} Missing for {len(missing)} of "
             f"{len(cases)} cases ({_shown(missing)}) in {previous.predictions}."]
    if folds:
        train = ", ".join(f"`autosegnet train {dataset_name} {lowres} {k}`" for k in folds)
        parts.append(f"Train {lowres} fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))} first "
                     f"({train}); each writes them in its final validation. For a fold trained already, add "
                     "--validate-only to write them without training again.")
    if orphans:
        parts.append(f"Cases {_shown(orphans)} are in no fold's 'val' list of splits_final.json, so no {lowres} "
                     "fold predicts them: add them to a fold.")
    raise AutoSegNetError(" ".join(parts))


def _shown(cases: Sequence[str]) -> str:
    extra = f", ... ({len(cases) - _SHOWN} more)" if len(cases) > _SHOWN else ""
    return ", ".join(cases[:_SHOWN]) + extra


# ----- written by a low-resolution fold's validation -------------------------------------------------------
def write_stage_predictions_from_files(next_stage: NextStage, plans: Plans, cases: Sequence[tuple[str, Any]],
                                       folder: Path, ending: str, reader: Any, fold: str) -> list[str]:
    """Bring the label maps ``folder/<case><ending>`` (raw grid) onto the next stage's grid and store them.

    ``cases``: ``(name, image files)`` pairs; ``reader`` (an ImageIO) reads label maps and images (the image's
    non-zero mask, see :func:`raw_prediction_to_stage`). Returns the cases left out because the next stage has not
    preprocessed them.
    """
    skipped = []
    for case, images in cases:
        properties = _stage_properties(next_stage, case)
        if properties is None:
            skipped.append(case)
            continue
        segmentation, _ = reader.read_seg(Path(folder) / f"{case}{ending}")
        image, _ = reader.read_images(images)
        stage_segmentation = raw_prediction_to_stage(segmentation, properties, plans, next_stage.plan, image)
        save_stage_prediction(next_stage.predictions, case, stage_segmentation, fold)
    return skipped


def write_stage_prediction(next_stage: NextStage, case: str, segmentation: np.ndarray,
                           properties: dict[str, Any], fold: str) -> bool:
    """Store one prediction made on the low-resolution preprocessed grid (``properties`` of that case) on the next
    stage's grid; False when the next stage has not preprocessed the case."""
    stage_properties = _stage_properties(next_stage, case)
    if stage_properties is None:
        return False
    save_stage_prediction(next_stage.predictions, case,
                          preprocessed_prediction_to_stage(segmentation, properties, stage_properties,
                                                           next_stage.plan), fold)
    return True


def warn_skipped(next_stage: NextStage, skipped: Sequence[str], dataset_name: str, configuration: str,
                 fold: str) -> None:
    """nnU-Net's behaviour for next-stage cases that are not preprocessed: leave them out, and say how to fix it."""
    if skipped:
        stage = next_stage.configuration
        log.warning(
            "No %s input written for %d case(s) (%s): %s is not preprocessed for them. Run `autosegnet preprocess %s "
            "-c %s`, then `autosegnet train %s %s %s --validate-only` to write them.", stage, len(skipped),
            _shown(list(skipped)), stage, dataset_name, stage, dataset_name, configuration, fold,
        )


def _stage_properties(next_stage: NextStage, case: str) -> dict[str, Any] | None:
    path = next_stage.preprocessed / f"{case}.json"
    if not path.is_file():
        return None
    return read_json(path)
