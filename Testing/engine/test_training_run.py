"""End-to-end training on tiny synthetic data (CPU, seconds): model folder, checkpoints, events, exact resume,
fine-tuning, time budget, 2D and region configurations, CLI."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _helpers_training import DATASET, InterruptAt, raw_workspace, tiny_config, tiny_workspace

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.network import build_network
from AutoSegNetLib.planning.plans import Plans
from AutoSegNetLib.progress import ProgressReporter, read_status
from AutoSegNetLib.training import train
from AutoSegNetLib.training.checkpoint import load_checkpoint
from AutoSegNetLib.training.loader import DataWorkerError
from AutoSegNetLib.training.pretrained import load_pretrained_weights
from AutoSegNetLib.utils.atomic import read_json

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT_KEYS = {"format", "version", "network_weights", "optimizer_state", "grad_scaler_state", "epoch", "best_ema",
                   "log", "rng_state", "training_config", "configuration", "inference_allowed_mirroring_axes"}


def run(workspace, config, reporter=None, **options) -> Path:
    return train(workspace, "1", options.pop("configuration", "3d_fullres"), options.pop("fold", 0), config,
                 reporter or ProgressReporter("none"), **options)


@pytest.fixture(scope="module")
def a_trained_fold(tmp_path_factory):
    workspace = tiny_workspace(tmp_path_factory.mktemp("trained"))
    stream = io.StringIO()
    model_folder = run(workspace, tiny_config(iteration_event_every=1), ProgressReporter("json", stream))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    return workspace, model_folder, events


def test_a_run_leaves_the_documented_model_folder(a_trained_fold):
    workspace, model_folder, _ = a_trained_fold
    assert model_folder == workspace.results / DATASET / "AutoSegNet__AutoSegNetPlans__3d_fullres"
    assert {"plans.json", "dataset.json"} <= {p.name for p in model_folder.iterdir()}
    fold = model_folder / "fold_0"
    for name in ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth", "status.json",
                 "training_log.txt", "progress.json", "progress.png", "validation/summary.json"):
        assert (fold / name).is_file(), name
    assert (workspace.preprocessed / DATASET / "splits_final.json").is_file()
    assert "epoch 2/2" in (fold / "training_log.txt").read_text()


def test_checkpoints_hold_exactly_the_documented_fields(a_trained_fold):
    checkpoint = load_checkpoint(a_trained_fold[1] / "fold_0" / "checkpoint_final.pth")
    assert set(checkpoint) == CHECKPOINT_KEYS
    assert (checkpoint["format"], checkpoint["version"], checkpoint["epoch"]) == ("autosegnet-checkpoint", 1, 2)
    assert checkpoint["configuration"] == "3d_fullres"
    assert checkpoint["inference_allowed_mirroring_axes"] == [0, 1, 2]
    assert checkpoint["training_config"]["iterations_per_epoch"] == 3
    assert checkpoint["grad_scaler_state"] is None  # no AMP on the CPU
    assert set(checkpoint["rng_state"]) >= {"python", "numpy", "torch", "sampler"}


def test_progress_events_cover_the_run_and_the_status_file_holds_the_last(a_trained_fold):
    _, model_folder, events = a_trained_fold
    kinds = [e["event"] for e in events]
    assert kinds[0] == "stage" and kinds[-1] == "done"
    assert kinds.count("iteration") == 6 and kinds.count("epoch") == 2
    epoch = next(e for e in events if e["event"] == "epoch")
    assert set(epoch["pseudo_dice"]) == {"first", "second"}
    assert {"train_loss", "val_loss", "lr", "epoch_s", "eta_s", "ema_pseudo_dice"} <= set(epoch)
    assert {e["kind"] for e in events if e["event"] == "checkpoint"} == {"best", "latest", "final"}
    validation = next(e for e in events if e["event"] == "validation")
    assert set(validation["dice"]) == {"first", "second"} and validation["space"] == "preprocessed"
    assert read_status(model_folder / "fold_0" / "status.json")["event"] == "done"


def test_progress_json_logs_every_epoch_and_the_summary_has_dice_per_class(a_trained_fold):
    fold = a_trained_fold[1] / "fold_0"
    records = read_json(fold / "progress.json")["epochs"]
    assert [r["epoch"] for r in records] == [0, 1]
    assert records[1]["lr"] == pytest.approx(1e-2 * (1 - 1 / 2) ** 0.9)
    summary = read_json(fold / "validation" / "summary.json")
    assert summary["labels"] == {"1": "first", "2": "second"} and summary["num_cases"] == 1
    assert set(summary["mean"]["1"]) >= {"Dice", "IoU"}


def test_validate_only_rewrites_the_summary_without_training(a_trained_fold):
    workspace, model_folder, _ = a_trained_fold
    summary = model_folder / "fold_0" / "validation" / "summary.json"
    summary.unlink()
    before = (model_folder / "fold_0" / "checkpoint_final.pth").stat().st_mtime_ns
    run(workspace, tiny_config(), validate_only=True)
    assert summary.is_file()
    assert (model_folder / "fold_0" / "checkpoint_final.pth").stat().st_mtime_ns == before



def _losses(model_folder: Path) -> list[tuple[float, float]]:
    return [(r["train_loss"], r["val_loss"]) for r in read_json(model_folder / "fold_0" / "progress.json")["epochs"]]


def test_an_interrupted_and_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    config = tiny_config(epochs=3, final_validation=False, iteration_event_every=1)
    straight = run(tiny_workspace(tmp_path / "straight"), config)
    workspace = tiny_workspace(tmp_path / "resumed")
    stopped = run(workspace, config, InterruptAt(4))  # SIGINT during epoch 2, iteration 1
    latest = load_checkpoint(stopped / "fold_0" / "checkpoint_latest.pth")
    assert latest["epoch"] == 1 and latest["log"]["in_progress"]["iteration"] == 1
    assert read_status(stopped / "fold_0" / "status.json")["status"] == "stopped"
    assert not (stopped / "fold_0" / "checkpoint_final.pth").exists()
    resumed = run(workspace, config, continue_training=True)
    assert _losses(resumed) == _losses(straight)
    final_a = load_checkpoint(straight / "fold_0" / "checkpoint_final.pth")["network_weights"]
    final_b = load_checkpoint(resumed / "fold_0" / "checkpoint_final.pth")["network_weights"]
    for key in final_a:
        assert torch.equal(final_a[key], final_b[key]), key


def test_background_workers_train_exactly_like_the_main_process(tmp_path):
    config = tiny_config(epochs=1, final_validation=False)
    local = run(tiny_workspace(tmp_path / "local"), config)
    pooled = run(tiny_workspace(tmp_path / "pooled"), config.replace(num_workers=2))
    assert _losses(local) == _losses(pooled)


def test_a_broken_case_in_a_worker_fails_the_run_with_its_error_in_the_status_file(tmp_path):
    workspace = tiny_workspace(tmp_path)
    for data in (workspace.preprocessed / DATASET / "AutoSegNetPlans_3d").glob("case_*[0-9].npy"):
        data.write_bytes(b"not an array")
    with pytest.raises(DataWorkerError, match="Data worker 0 failed while making train batch 0"):
        run(workspace, tiny_config(num_workers=1))
    fold = workspace.results / DATASET / "AutoSegNet__AutoSegNetPlans__3d_fullres" / "fold_0"
    status = read_status(fold / "status.json")
    assert status["event"] == "error" and status["message"].startswith("Data worker 0 failed")


def test_fine_tuning_from_a_model_with_other_labels_remakes_only_the_head(a_trained_fold):
    model_folder = a_trained_fold[1]
    plans = Plans.load(model_folder / "plans.json")
    network = build_network(plans.configuration("3d_fullres").network, 1, 4, deep_supervision=True)
    remade = load_pretrained_weights(network, model_folder / "fold_0" / "checkpoint_final.pth")
    assert remade and all("seg_layers" in key for key in remade)
    source = load_checkpoint(model_folder / "fold_0" / "checkpoint_final.pth")["network_weights"]
    first_conv = next(k for k in source if k.startswith("encoder.") and k.endswith("weight"))
    assert torch.equal(network.state_dict()[first_conv], source[first_conv])
    wrong = build_network(plans.configuration("3d_fullres").network, 2, 3, deep_supervision=True)  # 2 channels
    with pytest.raises(AutoSegNetError, match="same plan"):
        load_pretrained_weights(wrong, model_folder / "fold_0" / "checkpoint_final.pth")


def test_fine_tuning_warms_the_learning_rate_up(a_trained_fold, tmp_path):
    checkpoint = a_trained_fold[1] / "fold_0" / "checkpoint_final.pth"
    workspace = tiny_workspace(tmp_path)
    folder = run(workspace, tiny_config(epochs=3, warmup_epochs=1, final_validation=False), pretrained=checkpoint)
    lrs = [r["lr"] for r in read_json(folder / "fold_0" / "progress.json")["epochs"]]
    assert lrs == pytest.approx([1e-2, 1e-2, 1e-2 * 0.5**0.9])


def test_a_time_budget_fits_the_number_of_epochs(tmp_path):
    config = tiny_config(epochs=500, iterations_per_epoch=1, val_iterations=1, time_budget_minutes=0.02,
                         final_validation=False)
    folder = run(tiny_workspace(tmp_path), config)
    records = read_json(folder / "fold_0" / "progress.json")["epochs"]
    assert 1 <= len(records) < 500
    assert load_checkpoint(folder / "fold_0" / "checkpoint_final.pth")["log"]["total_epochs"] == len(records)


def test_2d_configurations_train_on_slices_of_3d_cases(tmp_path):
    folder = run(tiny_workspace(tmp_path, patch=[16, 16]), tiny_config(epochs=1, final_validation=False),
                 configuration="2d", fold="all")
    checkpoint = load_checkpoint(folder / "fold_all" / "checkpoint_final.pth")
    assert checkpoint["inference_allowed_mirroring_axes"] == [0, 1]
    assert checkpoint["network_weights"]["decoder.seg_layers.0.weight"].ndim == 4  # a 2D network


def test_regions_with_an_ignore_label_train_with_dice_and_bce(tmp_path):
    labels = {"background": 0, "whole": [1, 2], "core": [2], "ignore": 3}
    workspace = tiny_workspace(tmp_path, labels=labels, regions_class_order=[1, 2])
    folder = run(workspace, tiny_config(epochs=1))
    summary = read_json(folder / "fold_0" / "validation" / "summary.json")
    assert summary["labels"] == {"(1, 2)": "whole", "(2,)": "core"} and summary["ignore_label"] == 3


def test_with_raw_images_validation_predicts_files_in_the_original_geometry(tmp_path):
    workspace = raw_workspace(tmp_path)
    folder = run(workspace, tiny_config(epochs=1))
    validation = folder / "fold_0" / "validation"
    case = read_json(workspace.preprocessed / DATASET / "splits_final.json")[0]["val"][0]
    assert (validation / f"{case}.nii.gz").is_file() and (validation / f"{case}.npz").is_file()
    summary = read_json(validation / "summary.json")
    assert summary["space"] == "original" and summary["num_cases"] == 1
    assert summary["metric_per_case"][0]["reference_file"].endswith(f"labelsTr/{case}.nii.gz")


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint_readable(tmp_path, monkeypatch):
    from AutoSegNetLib.training import checkpoint as checkpoints

    path = tmp_path / "checkpoint_latest.pth"
    checkpoints.save_checkpoint(path, epoch=1)

    def crash(obj, target):
        target.write(b"half a checkpoint")  # checkpoints are saved into an open file
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_checkpoint(path, epoch=2)
    assert checkpoints.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_latest.pth"]


def test_the_cli_trains_and_reports_errors_with_exit_code_2(tmp_path, capsys):
    tiny_workspace(tmp_path)
    common = ["--workspace", str(tmp_path), "--progress", "json", "--device", "cpu"]
    assert main(["train", "1", "3d_fullres", "0", *common, "--epochs", "1", "--iterations", "1",
                 "--val-iterations", "1", "--no-final-validation"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["status"] == "finished"
    assert main(["train", "1", "3d_fullres", "7", *common]) == 2
    assert "Fold 7 does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_stops_a_cli_training_cleanly_with_exit_code_0(tmp_path):
    tiny_workspace(tmp_path)
    command = [sys.executable, "-m", "AutoSegNetLib", "train", "1", "3d_fullres", "0", "--workspace", str(tmp_path),
               "--progress", "json", "--device", "cpu", "--epochs", "1000", "--iterations", "50"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if json.loads(line)["event"] == "iteration":
            process.send_signal(signal.SIGTERM)
            break
    assert process.wait(timeout=120) == 0
    fold = tmp_path / "results" / DATASET / "AutoSegNet__AutoSegNetPlans__3d_fullres" / "fold_0"
    latest = load_checkpoint(fold / "checkpoint_latest.pth")  # iteration events come every 10 steps
    assert latest["epoch"] == 0 and 10 <= latest["log"]["in_progress"]["iteration"] < 50
    assert read_status(fold / "status.json")["status"] == "stopped"
