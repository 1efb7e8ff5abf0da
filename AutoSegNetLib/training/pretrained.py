"""Start from another model's weights (``--pretrained``): same plan, segmentation head re-made if the labels
differ (another number of classes, or other class names in the source model folder's dataset.json)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import DATASET_JSON_FILE
from AutoSegNetLib.training.checkpoint import load_checkpoint
from AutoSegNetLib.training.fold_setup import LabelSetup

log = logging.getLogger(__name__)
HEAD_MARKER = "seg_layers."


def load_pretrained_weights(network: nn.Module, checkpoint_path: Path, labels: LabelSetup | None = None) -> list[str]:
    """Copy the checkpoint's weights into ``network``; returns the keys of the re-initialised head (if any).

    Any other difference (missing key, other shape) means another architecture or plan and is an error.
    """
    checkpoint_path = Path(checkpoint_path)
    source = load_checkpoint(checkpoint_path)["network_weights"]
    target = network.state_dict()
    remake_head = labels is not None and _labels_differ(checkpoint_path, labels)
    merged, remade = {}, []
    for key, value in target.items():
        if HEAD_MARKER in key and (remake_head or key not in source or source[key].shape != value.shape):
            remade.append(key)
            merged[key] = value
            continue
        if key not in source or source[key].shape != value.shape:
            got = "missing" if key not in source else f"shape {tuple(source[key].shape)}"
            raise AutoSegNetError(
                f"Pretrained checkpoint {checkpoint_path} does not fit this network: {key!r} is {got}, expected "
                f"{tuple(value.shape)}.{_input_channels_hint(source.get(key), value)} Fine-tuning needs a model of "
                "the same plan and configuration."
            )
        merged[key] = source[key]
    network.load_state_dict(merged)
    if remade:
        log.info("Pretrained weights loaded; segmentation head re-made for the new labels (%d tensors).", len(remade))
    return remade


def _input_channels_hint(source: Any, target: Any) -> str:
    """A sentence when only the input channels of a first convolution differ (e.g. a cascade stage, which also takes
    the one-hot low-resolution segmentation, fine-tuned from a model without it), else ''."""
    if source is None or source.ndim < 3 or source.shape[0] != target.shape[0] or source.shape[2:] != target.shape[2:]:
        return ""
    return (f" The checkpoint's network takes {source.shape[1]} input channel(s), this one {target.shape[1]} (a "
            "3d_cascade_fullres network takes the image channels plus one per label of the 3d_lowres segmentation; "
            "fine-tune a cascade stage from a cascade checkpoint).")


def _labels_differ(checkpoint_path: Path, labels: LabelSetup) -> bool:
    """Whether the source model's dataset.json (two folders up) names other foreground classes."""
    source_json = checkpoint_path.parent.parent / DATASET_JSON_FILE
    if not source_json.is_file():
        return False
    try:
        source = LabelSetup.from_dataset_json(DatasetJson.load(source_json))
    except AutoSegNetError:
        return False
    return source.names != labels.names or source.regions != labels.regions
