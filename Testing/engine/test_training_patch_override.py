"""``train --patch-size``: the model folder records the patch the folds were trained with, and validation and
prediction tile with it instead of the plan's."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _helpers_inference import blob_image, geometry
from _helpers_training import DATASET, raw_workspace, tiny_config, tiny_workspace

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference import Predictor
from AutoSegNetLib.planning.plans import Plans
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.training import train

PLANNED, OVERRIDE = [16, 16, 16], [8, 8, 8]


@contextlib.contextmanager
def sliding_window_tiles() -> Iterator[set[tuple[int, ...]]]:
    """While active, the spatial sizes of every one-channel 5D input (the image, not a deeper feature map) that a
    module gets inside ``torch.inference_mode``: the sliding window's tiles (training and its per-epoch
    validation run outside it)."""
    seen: set[tuple[int, ...]] = set()

    def hook(_module: torch.nn.Module, args: tuple) -> None:
        x = args[0] if args else None
        if torch.is_inference_mode_enabled() and isinstance(x, torch.Tensor) and x.ndim == 5 and x.shape[1] == 1:
            seen.add(tuple(x.shape[2:]))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def run(workspace, fold=0, **options) -> Path:
    config = tiny_config(epochs=1, **({"patch_size": options.pop("patch_size")} if "patch_size" in options else {}))
    return train(workspace, "1", "3d_fullres", fold, config, ProgressReporter("none"), **options)


def plans_patch(path: Path) -> list[int]:
    return Plans.load(path).configuration("3d_fullres").patch_size


@pytest.fixture(scope="module")
def an_overridden_fold(tmp_path_factory):
    """A fold trained with ``patch_size`` 8^3 on data planned with 16^3, validated in the preprocessed space."""
    workspace = tiny_workspace(tmp_path_factory.mktemp("override"), patch=PLANNED)
    with sliding_window_tiles() as tiles:
        folder = run(workspace, patch_size=OVERRIDE)
    return workspace, folder, tiles


def test_the_model_folder_records_the_patch_the_folds_were_trained_with(an_overridden_fold):
    workspace, folder, _ = an_overridden_fold
    assert plans_patch(folder / "plans.json") == OVERRIDE
    assert plans_patch(workspace.preprocessed / DATASET / "plans.json") == PLANNED  # the plan itself is unchanged


def test_validation_and_prediction_tile_with_the_overridden_patch(an_overridden_fold):
    _, folder, validation_tiles = an_overridden_fold
    assert validation_tiles == {tuple(OVERRIDE)}
    predictor = Predictor.from_model_folder(folder, device="cpu", tta=False)
    assert predictor.window.patch_size == tuple(OVERRIDE)
    with sliding_window_tiles() as tiles:
        segmentation, _ = predictor.predict(blob_image((18, 20, 20)), geometry())
    assert tiles == {tuple(OVERRIDE)} and segmentation.shape == (18, 20, 20)


def test_validate_only_keeps_the_recorded_patch_and_other_folds_must_share_it(an_overridden_fold, tmp_path):
    workspace = tiny_workspace(tmp_path / "ws", patch=PLANNED)
    shutil.copytree(an_overridden_fold[1], workspace.results / DATASET / an_overridden_fold[1].name)
    with sliding_window_tiles() as tiles:
        folder = run(workspace, validate_only=True)  # no --patch-size: the one recorded
    assert tiles == {tuple(OVERRIDE)} and plans_patch(folder / "plans.json") == OVERRIDE
    with pytest.raises(AutoSegNetError, match=r"trained with patch size \[8, 8, 8\].*--patch-size 8 8 8"):
        run(workspace, fold=1)


def test_with_raw_images_validation_and_the_predict_command_use_the_overridden_patch(tmp_path):
    workspace = raw_workspace(tmp_path / "ws", n_cases=4)
    with sliding_window_tiles() as tiles:
        folder = run(workspace, patch_size=OVERRIDE)
    assert tiles == {tuple(OVERRIDE)}
    assert (folder / "fold_0" / "validation" / "summary.json").is_file()
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(workspace.raw / DATASET / "imagesTr" / "case_000_0000.nii.gz", inputs)
    with sliding_window_tiles() as tiles:
        assert main(["predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-d", "1", "-c", "3d_fullres",
                     "--workspace", str(tmp_path / "ws"), "--device", "cpu", "--no-tta"]) == 0
    assert tiles == {tuple(OVERRIDE)} and (tmp_path / "out" / "case_000.nii.gz").is_file()
