"""``import-nnunet``: an nnU-Net v2 model folder built in the test loads and predicts like our own folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers_inference import (
    DATASET,
    blob_image,
    geometry,
    random_network,
    tiny_configuration,
    tiny_dataset_json,
    write_model_folder,
)

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference import Predictor
from AutoSegNetLib.models import import_nnunet_model, plans_from_nnunet
from AutoSegNetLib.network import NetworkSpec

torch.set_num_threads(2)


def nnunet_architecture(spec: NetworkSpec) -> dict:
    """``architecture`` as nnU-Net v2 (>= 2.4) writes it into plans.json."""
    ndim = spec.ndim
    depth_key = "n_blocks_per_stage" if spec.name == "ResidualEncoderUNet" else "n_conv_per_stage"
    return {
        "network_class_name": f"dynamic_network_architectures.architectures.unet.{spec.name}",
        "arch_kwargs": {
            "n_stages": spec.n_stages, "features_per_stage": spec.features_per_stage,
            "conv_op": f"torch.nn.modules.conv.Conv{ndim}d", "kernel_sizes": spec.kernel_sizes,
            "strides": spec.strides, depth_key: spec.n_conv_per_stage,
            "n_conv_per_stage_decoder": spec.n_conv_per_stage_decoder, "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{ndim}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def nnunet_configuration(conf) -> dict:
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    return {
        "data_identifier": f"nnUNetPlans_{conf.name}", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": conf.patch_size, "median_image_size_in_voxels": conf.median_image_size,
        "spacing": conf.spacing, "normalization_schemes": conf.normalization_schemes,
        "use_mask_for_norm": conf.use_mask_for_norm,
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": resampling,
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
        "architecture": nnunet_architecture(NetworkSpec.from_dict(conf.network)), "batch_dice": True,
    }


def nnunet_plans(configurations: dict[str, dict]) -> dict:
    return {
        "dataset_name": DATASET, "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [10, 12, 9], "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "configurations": configurations,
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 3.0, "mean": 0.0, "median": 0.0, "min": -3.0, "percentile_00_5": -2.5, "percentile_99_5": 2.5,
            "std": 1.0}},
    }


def nnunet_checkpoint(network: torch.nn.Module, plans: dict, configuration: str, prefix: str, axes: tuple) -> dict:
    """What nnU-Net's trainer saves, including NumPy scalars and a torch.device in the extras."""
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    return {
        "network_weights": {prefix + k: v for k, v in network.state_dict().items()},
        "optimizer_state": optimizer.state_dict(), "grad_scaler_state": None,
        "logging": {"train_losses": [np.float64(-0.5)], "ema_fg_dice": [np.float32(0.8)], "lrs": [0.01]},
        "_best_ema": np.float64(0.81), "current_epoch": 1000,
        "init_args": {"plans": plans, "configuration": configuration, "fold": 0,
                      "dataset_json": {"labels": {"background": 0}}, "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": axes,
    }


def an_nnunet_model_folder(root: Path, conf, networks: list[torch.nn.Module], plans: dict | None = None,
                           prefix: str = "") -> Path:
    folder = root / "nnUNet_results" / DATASET / f"nnUNetTrainer__nnUNetPlans__{conf.name}"
    folder.mkdir(parents=True)
    plans = plans or nnunet_plans({conf.name: nnunet_configuration(conf)})
    (folder / "plans.json").write_text(json.dumps(plans, indent=4))
    dataset_json = {**tiny_dataset_json().to_dict(), "name": "Tiny", "description": "made in a test",
                    "overwrite_image_reader_writer": "SimpleITKIO", "modality_hint": "not an nnU-Net key"}
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    for fold, network in enumerate(networks):
        (folder / f"fold_{fold}").mkdir()
        checkpoint = nnunet_checkpoint(network, plans, conf.name, prefix, tuple(range(conf.ndim)))
        torch.save(checkpoint, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


CONFIGURATIONS = {
    "3d PlainConvUNet": dict(name="3d_fullres"),
    "3d ResidualEncoderUNet": dict(name="3d_fullres", network="ResidualEncoderUNet"),
    "2d PlainConvUNet": dict(name="2d", ndim=2, patch=(8, 8)),
    "2d ResidualEncoderUNet": dict(name="2d", ndim=2, patch=(8, 8), network="ResidualEncoderUNet"),
}


@pytest.mark.parametrize("case", list(CONFIGURATIONS))
def test_an_imported_nnunet_model_predicts_like_the_same_weights_in_our_format(tmp_path: Path, case: str) -> None:
    conf = tiny_configuration(**CONFIGURATIONS[case])
    ours = write_model_folder(tmp_path / "ours", conf, tiny_dataset_json(), folds=(0, 1))
    networks = [random_network(conf, tiny_dataset_json(), seed=s) for s in (0, 1)]   # same seeds as ours
    source = an_nnunet_model_folder(tmp_path, conf, networks)
    imported = import_nnunet_model(source, tmp_path / "imported")
    assert imported.name == f"AutoSegNet__nnUNetPlans__{conf.name}"
    image, geo = blob_image((6, 11, 10)), geometry((1.0, 1.0, 1.0))
    ours = Predictor.from_model_folder(ours, folds=None, device="cpu", tta=False)
    expected_segmentation, expected = ours.predict(image, geo)
    predictor = Predictor.from_model_folder(imported, folds=None, device="cpu", tta=False)
    segmentation, probabilities = predictor.predict(image, geo)
    assert predictor.mirror_axes == list(range(conf.ndim))  # from the checkpoint; TTA off to keep the test fast
    np.testing.assert_array_equal(segmentation, expected_segmentation)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)


def test_cli_import_writes_into_the_workspace_and_predict_finds_it(tmp_path: Path) -> None:
    conf = tiny_configuration()
    source = an_nnunet_model_folder(tmp_path, conf, [random_network(conf, tiny_dataset_json())], prefix="_orig_mod.")
    workspace = tmp_path / "ws"
    assert main(["import-nnunet", "--workspace", str(workspace), str(source)]) == 0
    folder = workspace / "results" / DATASET / "AutoSegNet__nnUNetPlans__3d_fullres"
    saved = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=True)
    assert saved["training_config"]["trainer_name"] == "nnUNetTrainer" and saved["epoch"] == 1000
    plans = json.loads((folder / "plans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["network"]["name"] == "PlainConvUNet"
    assert main(["import-nnunet", "--workspace", str(workspace), str(source)]) == 2   # exists: needs --force
    assert main(["import-nnunet", "--workspace", str(workspace), str(source), "--force"]) == 0


def test_cascade_configuration_inherits_from_its_parent() -> None:
    fullres = nnunet_configuration(tiny_configuration())
    plans = nnunet_plans({
        "3d_fullres": fullres,
        "3d_lowres": {**fullres, "spacing": [2.0, 2.0, 2.0], "next_stage": ["3d_cascade_fullres"]},
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
    })
    cascade = plans_from_nnunet(plans, "3d_cascade_fullres").configuration("3d_cascade_fullres")
    assert cascade.previous_stage == "3d_lowres" and cascade.patch_size == [8, 8, 8] and cascade.spacing == [1, 1, 1]
    assert plans_from_nnunet(plans, "3d_lowres").configuration("3d_lowres").next_stage == "3d_cascade_fullres"


def test_legacy_plans_keys_give_the_same_network() -> None:
    legacy = {key: value for key, value in nnunet_configuration(tiny_configuration()).items() if key != "architecture"}
    legacy.update(UNet_class_name="PlainConvUNet", UNet_base_num_features=4, unet_max_num_features=6,
                  conv_kernel_sizes=[[3, 3, 3], [3, 3, 3]], pool_op_kernel_sizes=[[1, 1, 1], [2, 2, 2]],
                  n_conv_per_stage_encoder=[1, 1], n_conv_per_stage_decoder=[1])
    network = plans_from_nnunet(nnunet_plans({"3d_fullres": legacy}), "3d_fullres").configuration("3d_fullres").network
    assert network["features_per_stage"] == [4, 6] and network["strides"] == [[1, 1, 1], [2, 2, 2]]


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(network_class_name="my_project.SwinUNETR"), "not supported"),
    (lambda a: a["arch_kwargs"].update(norm_op="torch.nn.BatchNorm3d"), "norm_op"),
    (lambda a: a["arch_kwargs"].update(dropout_op="torch.nn.Dropout3d"), "dropout_op"),
    (lambda a: a["arch_kwargs"].update(nonlin="torch.nn.ReLU"), "nonlin"),
    (lambda a: a["arch_kwargs"].update(conv_bias=False), "conv_bias"),
])
def test_architectures_that_would_predict_differently_are_refused(change, message) -> None:
    conf = nnunet_configuration(tiny_configuration())
    change(conf["architecture"])
    with pytest.raises(AutoSegNetError, match=message):
        plans_from_nnunet(nnunet_plans({"3d_fullres": conf}), "3d_fullres")


def test_models_read_with_nibabel_are_refused(tmp_path: Path) -> None:
    conf = tiny_configuration()
    plans = nnunet_plans({"3d_fullres": nnunet_configuration(conf)})
    plans["image_reader_writer"] = "NibabelIOWithReorient"
    source = an_nnunet_model_folder(tmp_path, conf, [random_network(conf, tiny_dataset_json())], plans=plans)
    with pytest.raises(AutoSegNetError, match="NibabelIOWithReorient"):
        import_nnunet_model(source, tmp_path / "out")


class Payload:
    """Not a tensor or plain data: loading it needs the pickle machinery."""


def test_checkpoints_with_arbitrary_objects_need_explicit_trust(tmp_path: Path) -> None:
    conf = tiny_configuration()
    source = an_nnunet_model_folder(tmp_path, conf, [random_network(conf, tiny_dataset_json())])
    path = source / "fold_0" / "checkpoint_final.pth"
    data = torch.load(path, weights_only=False)
    data["init_args"]["extra"] = Payload()
    torch.save(data, path)
    with pytest.raises(AutoSegNetError, match="--trust-checkpoints"):
        import_nnunet_model(source, tmp_path / "out")
    assert import_nnunet_model(source, tmp_path / "out2", trust_checkpoints=True).is_dir()


def test_weights_that_do_not_fit_the_plans_are_a_clear_error(tmp_path: Path) -> None:
    conf = tiny_configuration()
    other = tiny_configuration(network="ResidualEncoderUNet")
    source = an_nnunet_model_folder(tmp_path, conf, [random_network(other, tiny_dataset_json())])
    with pytest.raises(AutoSegNetError, match="do not fit"):
        import_nnunet_model(source, tmp_path / "out")
