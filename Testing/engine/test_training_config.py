"""TrainingConfig: nnU-Net's defaults, strict parsing, CLI overrides, schedule and time budget."""

from __future__ import annotations

import math

import pytest

from AutoSegNetLib.cli import build_parser
from AutoSegNetLib.cli.train import build_config
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.training import FINETUNE_OVERRIDES, TrainingConfig
from AutoSegNetLib.training.loop import LoopSettings
from AutoSegNetLib.training.schedule import PolyLR, fit_epochs_to_budget


def test_defaults_are_nnunets_recipe():
    config = TrainingConfig()
    assert (config.epochs, config.iterations_per_epoch, config.val_iterations) == (1000, 250, 50)
    assert (config.lr, config.momentum, config.nesterov, config.weight_decay) == (1e-2, 0.99, True, 3e-5)
    assert (config.poly_exponent, config.grad_clip, config.oversample_foreground) == (0.9, 12.0, 0.33)
    assert (config.device, config.amp, config.compile, config.num_workers) == ("auto", "auto", False, None)
    assert config.batch_size is None and config.patch_size is None


def test_unknown_setting_is_rejected_with_a_suggestion():
    with pytest.raises(AutoSegNetError, match="unknown training setting 'epoch'.*Did you mean 'epochs'"):
        TrainingConfig.from_dict({"epoch": 3})


@pytest.mark.parametrize("field, value", [("epochs", 0), ("oversample_foreground", 1.5), ("device", "tpu"),
                                          ("amp", "fp8"), ("batch_size", 0), ("patch_size", [16, -1])])
def test_impossible_values_name_the_setting(field, value):
    with pytest.raises(AutoSegNetError, match=field):
        TrainingConfig.from_dict({field: value})


def test_round_trip_through_a_dict_keeps_every_field():
    config = TrainingConfig(epochs=7, patch_size=[16, 32], time_budget_minutes=2.5)
    assert TrainingConfig.from_dict(config.to_dict()) == config


def _args(*argv: str):
    return build_parser().parse_args(["train", "Tiny", "3d_fullres", "0", *argv])


def test_command_line_flags_override_only_the_fields_given():
    config = build_config(_args("--epochs", "5", "--iterations", "7", "--patch-size", "16", "16", "16",
                                "--device", "cpu", "--time-budget", "1.5", "--no-augmentation", "--compile"))
    assert (config.epochs, config.iterations_per_epoch, config.patch_size) == (5, 7, [16, 16, 16])
    assert (config.device, config.time_budget_minutes, config.augmentation, config.compile) == ("cpu", 1.5, False, True)
    assert config.lr == 1e-2 and config.channels_last is None and config.fast_norm is None


def test_flags_apply_on_top_of_a_saved_config_when_continuing():
    saved = TrainingConfig(epochs=40, lr=3e-3, seed=9)
    config = build_config(_args("--continue", "--epochs", "50"), base=saved)
    assert (config.epochs, config.lr, config.seed) == (50, 3e-3, 9)


def test_pretrained_gets_the_short_fine_tuning_schedule_unless_epochs_are_given(tmp_path):
    short = build_config(_args("--pretrained", str(tmp_path / "c.pth")))
    assert (short.epochs, short.warmup_epochs) == (FINETUNE_OVERRIDES["epochs"], FINETUNE_OVERRIDES["warmup_epochs"])
    explicit = build_config(_args("--pretrained", str(tmp_path / "c.pth"), "--epochs", "9"))
    assert explicit.epochs == 9


def test_config_file_is_read_strictly(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"epochs": 3, "learning_rate": 0.1}')
    with pytest.raises(AutoSegNetError, match="learning_rate"):
        build_config(_args("--config", str(path)))


def test_poly_schedule_matches_nnunet_and_warm_up_rises_linearly():
    schedule = PolyLR(1e-2)
    assert schedule.lr_at(0, 1000) == 1e-2
    assert schedule.lr_at(500, 1000) == pytest.approx(1e-2 * 0.5**0.9)
    assert schedule.lr_at(999, 1000) == pytest.approx(1e-2 * (1 / 1000) ** 0.9)
    warm = PolyLR(1e-2, warmup_epochs=2)
    steps = [warm.lr_at(e, 10, i, 4) for e in range(2) for i in range(4)]
    assert steps == pytest.approx([1e-2 * k / 8 for k in range(1, 9)])
    assert warm.lr_at(2, 10) == 1e-2 and warm.lr_at(6, 10) == pytest.approx(1e-2 * 0.5**0.9)


def test_the_schedule_decays_over_the_total_it_is_asked_with():
    schedule = PolyLR(1e-2)
    assert schedule.lr_at(5, 10) == pytest.approx(1e-2 * 0.5**0.9)
    assert schedule.lr_at(5, 20) == pytest.approx(1e-2 * 0.75**0.9)  # a time budget that allows more epochs
    with pytest.raises(TypeError):
        PolyLR(1e-2, 1000)  # the epochs are not the schedule's: the exponent and warm-up are named


def test_a_resumed_run_trains_the_epochs_asked_for_now_or_under_a_budget_its_fitted_total():
    assert LoopSettings.from_config(TrainingConfig(epochs=7)).resumed_total(4) == 7
    budget = LoopSettings.from_config(TrainingConfig(epochs=7, time_budget_minutes=0.5))
    assert (budget.epochs, budget.time_budget_s) == (7, 30.0)
    assert budget.resumed_total(4) == 4 and budget.resumed_total(None) == 7

def test_time_budget_fits_epochs_from_measured_epoch_times():
    assert fit_epochs_to_budget(100.0, 12.0, [12.0], 1000) == 1 + math.floor(88 / 12)
    # the first epoch (start-up costs) is left out once there is a second one
    assert fit_epochs_to_budget(100.0, 30.0, [20.0, 10.0], 1000) == 2 + 7
    assert fit_epochs_to_budget(100.0, 30.0, [20.0, 10.0], 5) == 5
    assert fit_epochs_to_budget(10.0, 30.0, [20.0, 10.0], 1000) == 2


def test_a_fine_tuning_schedule_shorter_than_its_default_warm_up_gets_a_shorter_warm_up(tmp_path):
    """Retrain in Slicer with 1-3 epochs used to fail: warm-up 3 must be smaller than epochs."""
    for epochs, warmup in ((1, 0), (2, 1), (3, 2), (4, 3)):
        config = build_config(_args("--pretrained", str(tmp_path / "c.pth"), "--epochs", str(epochs)))
        assert (config.epochs, config.warmup_epochs) == (epochs, warmup)
    with pytest.raises(AutoSegNetError, match="warmup_epochs"):  # a warm-up the user asked for is not changed
        build_config(_args("--pretrained", str(tmp_path / "c.pth"), "--epochs", "2", "--warmup-epochs", "2"))


@pytest.mark.parametrize("flags, native", [("fpu avx2 avx512f avx512_bf16 avx512_vnni", True),
                                           ("fpu avx2 amx_bf16 amx_tile", True), ("fpu avx2 avx512f", False)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch, flags, native):
    from AutoSegNetLib.training import runtime

    monkeypatch.setattr(runtime.platform, "system", lambda: "Linux")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n")
    assert runtime.native_cpu_bf16(cpuinfo) is native
    assert runtime.native_cpu_bf16(tmp_path / "missing") is None


def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch, caplog):
    from AutoSegNetLib.training import runtime

    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: False)
    with caplog.at_level("WARNING", logger=runtime.__name__):
        made = runtime.make_runtime("cpu", "bf16", None)
    assert made.amp_dtype is not None and "emulated" in caplog.text
    caplog.clear()
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: True)
    runtime.make_runtime("cpu", "bf16", None)
    assert "emulated" not in caplog.text
