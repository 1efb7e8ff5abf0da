"""The experiment planner: nnU-Net v2.8 parity on Hippocampus, each rule on constructed fingerprints, plans.json."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from _helpers_planning import (
    dataset_json,
    hippocampus_workspace,
    uniform_fingerprint,
    write_case,
    write_dataset_json,
)

from AutoSegNetLib.cli import main as cli_main
from AutoSegNetLib.errors import AutoSegNetError, DatasetFormatError
from AutoSegNetLib.fingerprint import extract_fingerprint
from AutoSegNetLib.planning import (
    PLANNERS,
    ExperimentPlanner,
    Plans,
    get_planner,
    plan_experiment,
    plans_summary,
    register_planner,
)
from AutoSegNetLib.planning.memory import feature_map_size, resolve_gpu_memory_gb
from AutoSegNetLib.planning.normalization import SCHEME_BY_CHANNEL_NAME, normalization_plan
from AutoSegNetLib.planning.spacing import fullres_target_spacing, transpose_for
from AutoSegNetLib.planning.topology import pool_and_conv_props, shrink_axis
from AutoSegNetLib.workspace import Workspace

HIPPOCAMPUS_MEDIAN = (36, 50, 35)


@pytest.fixture
def a_hippocampus_like_plan() -> Plans:
    """The default plan for 208 cases of 36 x 50 x 35 voxels at 1 mm (the Hippocampus medians)."""
    return get_planner("default").plan(uniform_fingerprint(208, (1, 1, 1), HIPPOCAMPUS_MEDIAN), dataset_json(),
                                       "Dataset004_Hippocampus")


def assert_matches_the_nnunet_hippocampus_reference(plans: Plans) -> None:
    """nnU-Net v2.8.1 on the 208 shared Hippocampus cases (issue #3)."""
    assert plans.transpose_forward == [0, 1, 2]
    assert plans.original_median_spacing == [1.0, 1.0, 1.0]
    assert plans.original_median_shape == [36.0, 50.0, 35.0]
    assert sorted(plans.configurations) == ["2d", "3d_fullres"]
    full = plans.configuration("3d_fullres")
    assert (full.spacing, full.patch_size, full.batch_size) == ([1.0, 1.0, 1.0], [40, 56, 40], 7)
    assert full.network == {
        "name": "PlainConvUNet", "ndim": 3, "features_per_stage": [32, 64, 128, 256],
        "kernel_sizes": [[3, 3, 3]] * 4, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [2, 2, 2, 2], "n_conv_per_stage_decoder": [2, 2, 2],
    }
    assert (full.normalization_schemes, full.use_mask_for_norm, full.batch_dice) == (
        ["ZScoreNormalization"], [False], False)
    flat = plans.configuration("2d")
    assert (flat.spacing, flat.patch_size, flat.batch_size, flat.batch_dice) == ([1.0, 1.0], [56, 40], 292, True)
    assert flat.network["features_per_stage"] == [32, 64, 128, 256]
    assert flat.network["strides"] == [[1, 1], [2, 2], [2, 2], [2, 2]]
    assert flat.network["kernel_sizes"] == [[3, 3]] * 4


def test_hippocampus_medians_give_nnunets_reference_plan(a_hippocampus_like_plan: Plans):
    assert_matches_the_nnunet_hippocampus_reference(a_hippocampus_like_plan)
    assert a_hippocampus_like_plan.configuration("3d_fullres").data_identifier == "nnUNetPlans_3d_fullres"


def test_the_feature_map_count_equals_dynamic_network_architectures():
    # values printed by nnU-Net's resencUNet_planner.py / computed with compute_conv_feature_map_size
    plain = {"name": "PlainConvUNet", "ndim": 3, "features_per_stage": [32, 64, 128, 256],
             "kernel_sizes": [[3, 3, 3]] * 4, "strides": [[1, 1, 1]] + [[2, 2, 2]] * 3,
             "n_conv_per_stage": [2] * 4, "n_conv_per_stage_decoder": [2] * 3}
    assert feature_map_size(plain, (40, 56, 40), 1, 3) == 19_174_400
    # 560e6 / 19174400 * 2 = 58.4 -> the memory allows 58, the 5 % cap gives round(7.31) = 7
    assert round(560e6 / 19_174_400 * 2) == 58


# ----- target spacing and transpose ---------------------------------------------------------------------
def test_anisotropic_axis_gets_the_tenth_percentile_spacing():
    spacings = [(3.0, 0.8, 0.8)] * 2 + [(5.0, 0.8, 0.8)] * 8
    shapes = [(20, 256, 256)] * 10
    # median z 5 > 3 x 0.8 and 20 x 3 < 256: z takes np.percentile([3, 3, 5, ...], 10) = 3
    assert fullres_target_spacing(np.array(spacings), np.array(shapes)).tolist() == [3.0, 0.8, 0.8]


def test_anisotropic_spacing_with_many_slices_keeps_the_median():
    spacings = [(3.0, 0.8, 0.8)] * 2 + [(5.0, 0.8, 0.8)] * 8
    shapes = [(100, 256, 256)] * 10  # 100 x 3 >= 256: not anisotropic in voxels
    assert fullres_target_spacing(np.array(spacings), np.array(shapes)).tolist() == [5.0, 0.8, 0.8]


def test_tenth_percentile_never_goes_below_the_in_plane_spacing():
    spacings = [(0.5, 0.8, 0.8)] * 2 + [(5.0, 0.8, 0.8)] * 8
    target = fullres_target_spacing(np.array(spacings), np.array([(20, 256, 256)] * 10))
    assert target.tolist() == [0.8 + 1e-5, 0.8, 0.8]


def test_the_coarsest_axis_is_transposed_to_the_front():
    assert transpose_for([0.8, 0.8, 5.0]) == ([2, 0, 1], [1, 2, 0])
    assert transpose_for([1.0, 1.0, 1.0]) == ([0, 1, 2], [0, 1, 2])


def test_plans_of_an_x_coarse_dataset_are_transposed():
    plans = get_planner("default").plan(uniform_fingerprint(20, (0.8, 0.8, 5.0), (256, 256, 20)), dataset_json())
    assert plans.transpose_forward == [2, 0, 1]
    assert plans.configuration("3d_fullres").spacing[0] == 5.0
    assert plans.configuration("2d").spacing == [0.8, 0.8]


# ----- topology ------------------------------------------------------------------------------------------
def test_anisotropic_spacing_pools_in_plane_first_with_in_plane_kernels():
    topology = pool_and_conv_props((3.0, 0.8, 0.8), (32, 256, 256))
    # stage 1: z is 3.75x coarser -> only y, x pool, kernel 1 along z; then z is within 2x and joins in;
    # z stops at 4 voxels (32 / 8), y and x go on to 4 voxels (256 / 64)
    assert topology.strides == ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2))
    assert topology.kernel_sizes == ((1, 3, 3),) + ((3, 3, 3),) * 6
    assert topology.num_pool_per_axis == (3, 6, 6)
    assert topology.patch_size == (32, 256, 256)


def test_a_lone_poolable_axis_needs_three_times_the_minimum_feature_map():
    assert pool_and_conv_props((5.0, 1.0), (40, 11)).strides == ((1, 1),)
    assert pool_and_conv_props((5.0, 1.0), (40, 12)).strides == ((1, 1), (1, 2), (2, 1), (2, 1))


def test_the_patch_is_padded_to_a_multiple_of_the_pooling():
    assert pool_and_conv_props((1.0, 1.0, 1.0), (36, 50, 35)).patch_size == (40, 56, 40)


def test_shrinking_takes_the_step_of_the_smaller_patch():
    # 256 with 5 pools (multiple of 32) shrinks to 224, not to 192
    topology = pool_and_conv_props((1.0, 1.0), (256, 256), min_feature_map_size=4)
    assert shrink_axis((1.0, 1.0), topology, 0).patch_size == (224, 256)


# ----- batch size --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("num_cases", "batch_3d", "batch_2d"), [(208, 7, 292), (100, 4, 141), (3, 2, 4)])
def test_batch_is_capped_at_five_percent_of_the_dataset(num_cases, batch_3d, batch_2d):
    plans = get_planner("default").plan(uniform_fingerprint(num_cases, (1, 1, 1), HIPPOCAMPUS_MEDIAN), dataset_json())
    voxels = num_cases * 36 * 50 * 35
    # cap = round(voxels * 0.05 / patch voxels), at least 2; the memory would allow 58 (3D) and 1565 (2D)
    assert batch_3d == max(round(voxels * 0.05 / (40 * 56 * 40)), 2)
    assert batch_2d == max(round(voxels * 0.05 / (56 * 40)), 2)
    assert plans.configuration("3d_fullres").batch_size == batch_3d
    assert plans.configuration("2d").batch_size == batch_2d


def test_a_larger_gpu_target_scales_the_memory_reference(a_hippocampus_like_plan: Plans):
    fingerprint = uniform_fingerprint(208, (1, 1, 1), (200, 200, 200))
    base = get_planner("default").plan(fingerprint, dataset_json()).configuration("3d_fullres")
    big = get_planner("default").with_gpu_memory(32).plan(fingerprint, dataset_json()).configuration("3d_fullres")
    assert base.patch_size == [128, 128, 128] and base.batch_size == 2
    assert np.prod(big.patch_size) > np.prod(base.patch_size)


# ----- 3d_lowres and the cascade ----------------------------------------------------------------------------
def test_no_lowres_when_the_fullres_patch_covers_a_quarter_of_the_median_image():
    plans = get_planner("default").plan(uniform_fingerprint(50, (1, 1, 1), (200, 200, 200)), dataset_json())
    # 128^3 / 200^3 = 26 % >= 25 %
    assert sorted(plans.configurations) == ["2d", "3d_fullres"]
    assert plans.configuration("3d_fullres").batch_dice is False


def test_large_isotropic_images_get_a_lowres_stage_whose_spacing_grows_by_three_percent():
    plans = get_planner("default").plan(uniform_fingerprint(50, (1, 1, 1), (400, 400, 400)), dataset_json())
    assert list(plans.configurations) == ["2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"]
    low, full, cascade = (plans.configuration(n) for n in ("3d_lowres", "3d_fullres", "3d_cascade_fullres"))
    assert full.patch_size == [128, 128, 128]  # 128^3 / 400^3 = 3 % < 25 %
    # isotropic: all axes grow together; 1.03^22 = 1.916 gives a patch < 25 % of (400 / 1.916)^3, 1.03^23 does not
    assert low.spacing == pytest.approx([1.03**23] * 3, rel=1e-12)
    assert low.median_image_size == [203.0, 203.0, 203.0]  # round(400 / 1.9736)
    assert np.prod(low.patch_size) / np.prod(low.median_image_size) >= 0.25
    assert (low.batch_dice, full.batch_dice, cascade.batch_dice) == (False, True, True)
    assert (low.next_stage, cascade.previous_stage) == ("3d_cascade_fullres", "3d_lowres")
    assert cascade.patch_size == full.patch_size and cascade.data_identifier == full.data_identifier
    assert low.data_identifier == "nnUNetPlans_3d_lowres"


def test_anisotropic_lowres_spacing_grows_the_fine_axes_first():
    plans = get_planner("default").plan(uniform_fingerprint(50, (5.0, 0.8, 0.8), (60, 512, 512)), dataset_json())
    low = plans.configuration("3d_lowres")
    # in-plane 0.8 x 1.03^15 = 1.246 is still more than 2x finer than 5 mm, so z never grew
    assert low.spacing == pytest.approx([5.0, 0.8 * 1.03**15, 0.8 * 1.03**15], rel=1e-12)


# ----- normalisation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("relative_size", "expected_mask"), [(0.5, [False, True, False]), (0.8, [False, False, False])]
)
def test_ct_gets_ct_normalisation_and_only_zscore_uses_the_mask_after_strong_cropping(relative_size, expected_mask):
    names = {"0": "CT", "1": "T2", "2": "noNorm"}
    schemes, mask = normalization_plan(names, relative_size)
    assert schemes == ["CTNormalization", "ZScoreNormalization", "NoNormalization"]
    assert mask == expected_mask


def test_channel_names_map_to_nnunets_schemes_case_insensitively():
    names = {"0": "ct", "1": "ZSCORE", "2": "rescale_to_0_1", "3": "RGB_to_0_1", "4": "anything"}
    assert normalization_plan(names, 1.0)[0] == [
        "CTNormalization", "ZScoreNormalization", "RescaleTo01Normalization", "RGBTo01Normalization",
        "ZScoreNormalization"]


def test_every_scheme_the_planner_chooses_is_a_registered_normalisation():
    from AutoSegNetLib.preprocessing.normalization import NORMALIZATIONS

    assert set(SCHEME_BY_CHANNEL_NAME.values()) <= set(NORMALIZATIONS)


def test_the_plan_carries_per_channel_normalisation_and_the_ct_statistics():
    fingerprint = uniform_fingerprint(20, (1, 1, 1), (64, 64, 64), relative_size=0.5, num_channels=2)
    plans = get_planner("default").plan(fingerprint, dataset_json({"0": "CT", "1": "MRI"}))
    conf = plans.configuration("3d_fullres")
    assert (conf.normalization_schemes, conf.use_mask_for_norm) == (["CTNormalization", "ZScoreNormalization"],
                                                                     [False, True])
    assert plans.foreground_intensity_properties["0"]["percentile_99_5"] == 2.0


# ----- planners --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "target_gb", "batch_3d"), [("resenc-m", 8, 58), ("resenc-l", 24, 146),
                                                             ("resenc-xl", 40, 146)])
def test_resenc_presets_use_residual_encoders_and_their_memory_targets(name, target_gb, batch_3d):
    plans = get_planner(name).plan(uniform_fingerprint(208, (1, 1, 1), HIPPOCAMPUS_MEDIAN), dataset_json())
    conf = plans.configuration("3d_fullres")
    assert plans.gpu_memory_target_gb == target_gb and plans.planner == name
    assert conf.network["name"] == "ResidualEncoderUNet"
    assert conf.network["n_conv_per_stage"] == [1, 3, 4, 6]
    assert conf.network["n_conv_per_stage_decoder"] == [1, 1, 1]
    assert conf.patch_size == [40, 56, 40]
    # no 5 % cap for ResEnc (max_dataset_covered = 1): the cap is round(208 x 63000 / 89600) = 146
    assert conf.batch_size == batch_3d
    assert conf.data_identifier == "nnUNetPlans_3d_fullres"  # same data as the default plans
    assert get_planner(name).encoder_depth[:6] == (1, 3, 4, 6, 6, 6)


def test_resenc_stages_follow_one_three_four_six_six_six():
    plans = get_planner("resenc-l").plan(uniform_fingerprint(50, (1, 1, 1), (400, 400, 400)), dataset_json())
    assert plans.configuration("3d_fullres").network["n_conv_per_stage"] == [1, 3, 4, 6, 6, 6]
    assert plans.configuration("3d_lowres").data_identifier == "nnUNetResEncUNetLPlans_3d_lowres"


def test_every_registered_planner_plans_2d_and_3d_data():
    for name in PLANNERS:
        for fingerprint in (uniform_fingerprint(5, (1, 1, 1), (30, 40, 50)),
                            uniform_fingerprint(5, (999, 1, 1), (1, 300, 200))):
            plans = get_planner(name).plan(fingerprint, dataset_json())
            assert "2d" in plans.configurations, name
            assert Plans.from_dict(plans.to_dict()) == plans


def test_natural_2d_images_only_get_the_2d_configuration():
    plans = get_planner("default").plan(uniform_fingerprint(30, (999.0, 1.0, 1.0), (1, 512, 512)),
                                        dataset_json({"0": "R", "1": "G", "2": "B"}, file_ending=".png"))
    assert list(plans.configurations) == ["2d"]
    flat = plans.configuration("2d")
    # 30 x 512^2 x 5 % / 512^2 = 1.5 -> the minimum batch size 2
    assert (flat.spacing, flat.patch_size, flat.batch_size) == ([1.0, 1.0], [512, 512], 2)
    assert flat.network["strides"] == [[1, 1]] + [[2, 2]] * 7  # 512 -> 4 voxels: 7 poolings, 8 stages
    assert flat.network["features_per_stage"] == [32, 64, 128, 256, 512, 512, 512, 512]
    assert plans.image_reader_writer == "NaturalImage2DIO"


def test_an_unknown_planner_name_suggests_the_closest():
    with pytest.raises(AutoSegNetError, match="Did you mean 'resenc-xl'"):
        get_planner("resenc-xxl")


def test_a_custom_planner_is_a_replaced_setting_or_a_small_subclass():
    register_planner("tiny-features", dataclasses.replace(ExperimentPlanner(), base_features=16))

    @dataclasses.dataclass
    class FixedSpacing(ExperimentPlanner):
        def target_spacing(self, fingerprint):
            return np.array([2.0, 2.0, 2.0])

    register_planner("fixed-spacing", FixedSpacing)
    try:
        fingerprint = uniform_fingerprint(20, (1, 1, 1), (64, 64, 64))
        tiny = get_planner("tiny-features").plan(fingerprint, dataset_json())
        assert tiny.configuration("3d_fullres").network["features_per_stage"][:3] == [16, 32, 64]
        assert tiny.planner == "tiny-features"
        fixed = get_planner("fixed-spacing").plan(fingerprint, dataset_json()).configuration("3d_fullres")
        assert (fixed.spacing, fixed.median_image_size) == ([2.0, 2.0, 2.0], [32.0, 32.0, 32.0])
    finally:
        PLANNERS.pop("tiny-features")
        PLANNERS.pop("fixed-spacing")


# ----- GPU memory ------------------------------------------------------------------------------------------
def test_gpu_memory_auto_falls_back_to_the_default_without_a_gpu(monkeypatch, caplog):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO):
        assert resolve_gpu_memory_gb("auto", 8.0) == 8.0
    assert "no CUDA GPU found" in caplog.text


def test_gpu_memory_auto_reads_the_local_gpu(monkeypatch):
    import AutoSegNetLib.planning.memory as memory

    monkeypatch.setattr(memory, "detect_gpu_memory_gb", lambda: 23.6)
    assert resolve_gpu_memory_gb("auto", 8.0) == 23.6
    assert (resolve_gpu_memory_gb(None, 24.0), resolve_gpu_memory_gb(12, 8.0)) == (24.0, 12.0)
    for bad in ("lots", -1):
        with pytest.raises(AutoSegNetError):
            resolve_gpu_memory_gb(bad, 8.0)


# ----- plans.json and the entry point ------------------------------------------------------------------------
def test_plans_round_trip_through_json(a_hippocampus_like_plan: Plans, tmp_path: Path):
    a_hippocampus_like_plan.save(tmp_path / "plans.json")
    assert Plans.load(tmp_path / "plans.json") == a_hippocampus_like_plan


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour="red"), "unknown field 'colour'"),
        (lambda d: d["configurations"]["2d"].update(patch="x"), "unknown field 'configurations.2d.patch'"),
        (lambda d: d["configurations"]["2d"]["resampling"].update(order=3), "unknown field"),
        (lambda d: d["configurations"]["2d"].update(batch_size="2"), "batch_size"),
    ],
    ids=["top-level", "configuration", "resampling", "type"],
)
def test_plans_with_unknown_or_mistyped_fields_are_rejected(a_hippocampus_like_plan: Plans, change, message):
    data = json.loads(json.dumps(a_hippocampus_like_plan.to_dict()))
    change(data)
    with pytest.raises(DatasetFormatError, match=message):
        Plans.from_dict(data)


@pytest.fixture
def a_fingerprinted_workspace(tmp_path: Path) -> Workspace:
    """Dataset009_Big (raw dataset.json only) with a constructed fingerprint of 50 cases of 400^3 voxels."""
    workspace = Workspace.at(tmp_path / "ws")
    write_dataset_json(workspace.raw / "Dataset009_Big", {"0": "CT"}, {"background": 0, "liver": 1}, 50)
    fingerprint = uniform_fingerprint(50, (1, 1, 1), (400, 400, 400), name="Dataset009_Big")
    fingerprint.save(workspace.preprocessed / "Dataset009_Big" / "fingerprint.json")
    return workspace


def test_plan_experiment_writes_plans_and_a_dataset_json_copy(a_fingerprinted_workspace: Workspace):
    plans = plan_experiment(a_fingerprinted_workspace, "9")
    folder = a_fingerprinted_workspace.preprocessed / "Dataset009_Big"
    assert Plans.load(folder / "plans.json") == plans
    assert (folder / "dataset.json").read_bytes() == (a_fingerprinted_workspace.raw / "Dataset009_Big" /
                                                      "dataset.json").read_bytes()
    assert sorted(plans.configurations) == ["2d", "3d_cascade_fullres", "3d_fullres", "3d_lowres"]


def test_requested_configurations_are_kept_and_the_cascade_brings_its_lowres(a_fingerprinted_workspace: Workspace):
    plans = plan_experiment(a_fingerprinted_workspace, "9", configurations=["3d_cascade_fullres"])
    assert sorted(plans.configurations) == ["3d_cascade_fullres", "3d_lowres"]
    with pytest.raises(AutoSegNetError, match="Did you mean '3d_fullres'"):
        plan_experiment(a_fingerprinted_workspace, "9", configurations=["3d_fulres"])


def test_replanning_keeps_custom_configurations(a_fingerprinted_workspace: Workspace):
    path = a_fingerprinted_workspace.preprocessed / "Dataset009_Big" / "plans.json"
    plans = plan_experiment(a_fingerprinted_workspace, "9", configurations=["2d"])
    custom = dataclasses.replace(plans.configuration("2d"), name="2d_bs64", batch_size=64)
    plans.configurations["2d_bs64"] = custom
    plans.save(path)
    again = plan_experiment(a_fingerprinted_workspace, "9")
    assert again.configuration("2d_bs64").batch_size == 64
    assert "3d_fullres" in again.configurations


def test_planning_without_a_fingerprint_says_what_to_run(tmp_path: Path):
    workspace = Workspace.at(tmp_path / "ws")
    write_dataset_json(workspace.raw / "Dataset010_New", {"0": "MRI"}, {"background": 0, "a": 1}, 1)
    with pytest.raises(AutoSegNetError, match="autosegnet fingerprint Dataset010_New"):
        plan_experiment(workspace, "10")


def test_the_summary_table_shows_every_configuration(a_hippocampus_like_plan: Plans):
    text = plans_summary(a_hippocampus_like_plan)
    assert "3d_fullres" in text and "40 x 56 x 40" in text and "292" in text
    assert "1x1x1, 2x2x2, 2x2x2, 2x2x2" in text and "3x3x3 (all)" in text


def test_plan_command_prints_the_summary(a_fingerprinted_workspace: Workspace, caplog):
    root = str(a_fingerprinted_workspace.raw.parent)
    with caplog.at_level(logging.INFO):
        assert cli_main(["plan", "9", "--workspace", root, "--planner", "resenc-m", "--gpu-memory-gb", "auto",
                         "-c", "2d", "3d_fullres", "--progress", "none"]) == 0
    assert "planner 'resenc-m'" in caplog.text and "batch size" in caplog.text
    plans = Plans.load(a_fingerprinted_workspace.preprocessed / "Dataset009_Big" / "plans.json")
    assert sorted(plans.configurations) == ["2d", "3d_fullres"]


def test_plan_command_rejects_a_non_numeric_gpu_memory(a_fingerprinted_workspace: Workspace):
    with pytest.raises(SystemExit):
        cli_main(["plan", "9", "--gpu-memory-gb", "lots"])


# ----- Hippocampus end to end -----------------------------------------------------------------------------
def test_hippocampus_fingerprint_and_plan_equal_the_nnunet_reference(tmp_path: Path):
    workspace = hippocampus_workspace(tmp_path)
    extract_fingerprint(workspace, "4", num_workers=2)
    plans = plan_experiment(workspace, "Hippocampus", configurations=["2d", "3d_fullres"])
    assert_matches_the_nnunet_hippocampus_reference(plans)
    assert plans.image_reader_writer == "SimpleITKIO"


# ----- plan-and-preprocess -------------------------------------------------------------------------------
def _tiny_raw_dataset(workspace: Workspace, bad_label: bool = False) -> None:
    raw = workspace.raw / "Dataset011_Tiny"
    write_dataset_json(raw, {"0": "MRI"}, {"background": 0, "a": 1}, 2)
    for i in range(2):
        image = np.zeros((12, 16, 16), np.float32)
        image[2:10, 2:14, 2:14] = 10 + i
        seg = np.zeros((12, 16, 16), np.uint8)
        seg[4:8, 5:9, 5:9] = 3 if bad_label and i == 1 else 1
        write_case(raw, f"tiny_{i}", [image], seg, (1.0, 1.0, 1.0))


@pytest.fixture
def few_draws(monkeypatch):
    """Fingerprints draw 1000 foreground voxels in total instead of 10e7 (speed; the rule is tested elsewhere)."""
    import AutoSegNetLib.fingerprint.extract as extract
    from AutoSegNetLib.fingerprint.intensity import samples_per_case

    monkeypatch.setattr(extract, "samples_per_case", lambda n, total=0: samples_per_case(n, 1000))


def test_plan_and_preprocess_chains_verify_fingerprint_plan_and_preprocess(tmp_path: Path, few_draws):
    workspace = Workspace.at(tmp_path / "ws")
    _tiny_raw_dataset(workspace)
    assert cli_main(["plan-and-preprocess", "11", "--workspace", str(tmp_path / "ws"), "-np", "1", "--verify",
                     "-c", "3d_fullres", "--progress", "none"]) == 0
    folder = workspace.preprocessed / "Dataset011_Tiny"
    assert {"fingerprint.json", "plans.json", "dataset.json"} <= {p.name for p in folder.iterdir()}
    written = {p.name for p in (folder / "nnUNetPlans_3d_fullres").iterdir()}
    assert {"tiny_0.npy", "tiny_0_seg.npy", "tiny_1.npy", "tiny_1_seg.npy"} <= written
    assert not (folder / "nnUNetPlans_2d").exists()


def test_plan_and_preprocess_stops_when_verify_finds_errors(tmp_path: Path, few_draws):
    workspace = Workspace.at(tmp_path / "ws")
    _tiny_raw_dataset(workspace, bad_label=True)
    assert cli_main(["plan-and-preprocess", "11", "--workspace", str(tmp_path / "ws"), "-np", "1", "--verify",
                     "--progress", "none"]) == 1
    assert not (workspace.preprocessed / "Dataset011_Tiny" / "plans.json").exists()
