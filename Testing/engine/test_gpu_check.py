"""scripts/gpu_check.sh: the guarded steps and their JSON report, and (slow) the whole CPU dry run for real."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    """``scripts/gpu_check.py`` imported as a module (the scripts folder is no package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dry_run_settings(gpu_check, tmp_path):
    return gpu_check.CheckSettings(device="cpu", quick=True, workdir=tmp_path)


def a_step(gpu_check, name: str, outcome, needs: tuple[str, ...] = ()):
    """A step whose run returns ``outcome`` or raises it (when it is an exception)."""

    def run(_context):
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return gpu_check.Step(name, f"the {name} step", run, needs)


# ----- command line ------------------------------------------------------------------------------------------
def test_list_steps_prints_every_step_in_order_without_running_any(gpu_check) -> None:
    result = subprocess.run([str(SCRIPT), "--list-steps"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [s["name"] for s in json.loads(result.stdout)] == [
        "environment", "dataset", "train_fp16", "train_bf16", "ddp", "predict_tta", "oom_fallback", "bench_training",
    ]
    assert [s.name for s in gpu_check.STEPS] == [s["name"] for s in json.loads(result.stdout)]


def test_the_check_defaults_to_cuda_and_takes_the_dry_run_options(gpu_check) -> None:
    assert gpu_check.build_parser().parse_args([]).device == "cuda"
    args = gpu_check.build_parser().parse_args(["--device", "cpu", "--quick", "--out", "r.json", "--skip", "ddp"])
    assert (args.device, args.quick, args.out, args.skip) == ("cpu", True, Path("r.json"), ["ddp"])
    with pytest.raises(SystemExit):
        gpu_check.build_parser().parse_args(["--skip", "no_such_step"])


def test_the_dry_run_trains_without_amp_and_the_gpu_run_with_the_requested_mode(gpu_check, tmp_path) -> None:
    assert gpu_check.CheckSettings("cpu", True, tmp_path).amp("bf16") == "off"
    assert gpu_check.CheckSettings("cuda", False, tmp_path).amp("bf16") == "bf16"
    quick, full = gpu_check.CheckSettings("cpu", True, tmp_path), gpu_check.CheckSettings("cuda", False, tmp_path)
    assert (quick.num_cases, quick.iterations, full.num_cases, full.iterations) == (5, 2, 12, 20)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_without_a_gpu_the_cuda_check_fails_in_environment_and_skips_the_device_steps(tmp_path, gpu_check) -> None:
    out = tmp_path / "gpu_check.json"
    result = subprocess.run([str(SCRIPT), "--skip", "dataset", "--out", str(out)], capture_output=True, text=True,
                            timeout=120)
    report = json.loads(result.stdout)
    assert result.returncode == 1 and json.loads(out.read_text()) == report
    assert (report["device"], report["status"], report["failed_steps"]) == ("cuda", "failed", ["environment"])
    environment = report["steps"]["environment"]
    assert environment["cuda_available"] is False and "sees no CUDA GPU" in environment["error"]["message"]
    assert {name: r["status"] for name, r in report["steps"].items() if name != "environment"} == {
        s.name: "skipped" for s in gpu_check.STEPS if s.name != "environment"
    }


# ----- guarded steps and the report --------------------------------------------------------------------------
def test_a_failing_step_is_recorded_and_the_check_goes_on(gpu_check, dry_run_settings) -> None:
    steps = [
        a_step(gpu_check, "first", {"value": 1}),
        a_step(gpu_check, "broken", ValueError("no good")),
        a_step(gpu_check, "after_broken", {"value": 2}, needs=("broken",)),
        a_step(gpu_check, "last", {"value": 3}),
    ]
    report = gpu_check.run_checks(dry_run_settings, steps)
    assert (report["status"], report["failed_steps"], report["device"]) == ("failed", ["broken"], "cpu")
    assert list(report["steps"]) == ["first", "broken", "after_broken", "last"]
    assert report["steps"]["first"]["status"] == report["steps"]["last"]["status"] == "ok"
    error = report["steps"]["broken"]["error"]
    assert (error["type"], error["message"]) == ("ValueError", "no good")
    assert "ValueError: no good" in error["stderr_tail"][-1]
    assert report["steps"]["after_broken"] == {"status": "skipped", "seconds": 0.0,
                                               "reason": "needs step 'broken', which did not pass"}
    assert gpu_check.exit_status(report) == 1


def test_skipped_steps_do_not_fail_the_check(gpu_check, dry_run_settings) -> None:
    steps = [a_step(gpu_check, "bf16", gpu_check.SkipStepError("no bf16 here")), a_step(gpu_check, "ok", {})]
    report = gpu_check.run_checks(dry_run_settings, steps, skip=["ok"])
    assert [r["status"] for r in report["steps"].values()] == ["skipped", "skipped"]
    assert [r["reason"] for r in report["steps"].values()] == ["no bf16 here", "--skip"]
    assert (report["status"], gpu_check.exit_status(report)) == ("ok", 0)


def test_a_wrong_result_keeps_its_details_beside_the_error(gpu_check, dry_run_settings) -> None:
    wrong = gpu_check.CheckFailedError("labels differ", {"differing_voxels": 7})
    record = gpu_check.run_checks(dry_run_settings, [a_step(gpu_check, "oom", wrong)])["steps"]["oom"]
    assert (record["status"], record["differing_voxels"], record["error"]["type"]) == ("failed", 7,
                                                                                        "CheckFailedError")


def test_a_failed_command_reports_the_tail_of_its_stderr(gpu_check) -> None:
    command = [sys.executable, "-c", "import sys; print('event'); sys.stderr.write('one\\ntwo\\n'); sys.exit(3)"]
    with pytest.raises(gpu_check.CommandFailedError, match="exit status 3") as caught:
        gpu_check.run_command(command, timeout_s=60)
    assert caught.value.stderr_tail == ["one", "two"]


def test_a_command_past_its_time_limit_is_ended_and_reported(gpu_check) -> None:
    with pytest.raises(gpu_check.CommandFailedError, match="timed out after 1 s"):
        gpu_check.run_command([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=1)


# ----- measurements ------------------------------------------------------------------------------------------
def test_progress_events_are_read_from_stdout_between_other_lines(gpu_check) -> None:
    stdout = 'Loaded model\n{"event": "stage", "time": 1.0}\n{not json\n{"no_event": 1}\n{"event": "done"}\n'
    assert gpu_check.parse_events(stdout) == [{"event": "stage", "time": 1.0}, {"event": "done"}]


def test_seconds_per_iteration_is_the_median_gap_after_the_first_step(gpu_check) -> None:
    events = [{"event": "stage", "time": 100.0}] + [
        {"event": "iteration", "time": t} for t in (105.0, 106.0, 108.0, 109.5)
    ]
    assert gpu_check.iteration_timing(events) == {"iterations": 4, "first_iteration_s": 5.0, "s_per_iteration": 1.5}


def test_only_numbers_that_are_finite_count_as_finite_losses(gpu_check) -> None:
    assert [gpu_check.is_finite(v) for v in (1.25, 0, float("nan"), float("inf"), None)] == [
        True, True, False, False, False,
    ]


# ----- forced out-of-memory fallback -------------------------------------------------------------------------
def test_forced_failures_end_the_fallback_at_the_reference_forward_passes(gpu_check) -> None:
    assert gpu_check.forced_failures("cuda") == 2  # on the GPU, then accumulating on the CPU, then 1 tile
    assert gpu_check.forced_failures("cpu") == 1


def test_failing_forwards_raise_out_of_memory_first_and_are_removed_afterwards(gpu_check) -> None:
    network = nn.Identity()
    with gpu_check.failing_forwards([network], 2) as counters:
        for _ in range(2):
            with pytest.raises(torch.OutOfMemoryError, match="simulated"):
                network(torch.zeros(1))
        assert network(torch.ones(1)).item() == 1.0
    assert counters == {"calls": 3, "raised": 2}
    assert not network._forward_pre_hooks


def test_the_sliding_window_falls_back_to_the_reference_result_and_logs_each_retry(gpu_check) -> None:
    from AutoSegNetLib.inference.sliding_window import sliding_window_predict

    torch.manual_seed(0)
    network = nn.Conv3d(1, 3, 3, padding=1).eval()
    image = torch.randn(1, 12, 12, 12)
    window = {"patch_size": (8, 8, 8), "mirror_axes": (0, 1), "nonlin": "softmax", "batch_mirrors": True}
    expected = sliding_window_predict(network, image, tile_batch=1, **window)
    failures = gpu_check.forced_failures("cpu")
    with gpu_check.failing_forwards([network], failures) as counters, \
            gpu_check.captured_warnings(gpu_check.SLIDING_WINDOW_LOGGER) as lines:
        got = sliding_window_predict(network, image, tile_batch=2, **window)
    assert torch.equal(got, expected)
    assert counters["raised"] == failures and len(lines) == failures and "Out of memory" in lines[0]


def test_oom_problems_name_missing_warnings_and_differing_labels(gpu_check) -> None:
    good = {"raised": 2, "forced_failures": 2, "fallback_log": ["a", "b"], "labels_equal": True,
            "differing_voxels": 0}
    assert gpu_check.oom_problems(good) == []
    bad = {**good, "fallback_log": ["a"], "labels_equal": False, "differing_voxels": 4}
    assert gpu_check.oom_problems(bad) == ["1 fallback warnings logged for 2 errors",
                                           "the fallback's label map differs from the normal one in 4 voxels"]


def test_captured_warnings_collect_only_while_active(gpu_check) -> None:
    logger = logging.getLogger("gpu_check_test")
    with gpu_check.captured_warnings("gpu_check_test") as lines:
        logger.info("not a warning")
        logger.warning("kept %d", 1)
    logger.warning("too late")
    assert lines == ["kept 1"]


# ----- the dry run, for real ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_cpu_dry_run_passes_every_step_and_writes_the_same_report_it_prints(tmp_path, gpu_check) -> None:
    out = tmp_path / "report" / "gpu_check.json"
    result = subprocess.run([str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)], capture_output=True,
                            text=True, timeout=900)
    report = json.loads(result.stdout)
    assert result.returncode == 0, json.dumps(report, indent=1)[-4000:]
    assert json.loads(out.read_text()) == report
    assert list(report["steps"]) == [s.name for s in gpu_check.STEPS]
    assert {name: r["status"] for name, r in report["steps"].items()} == {s.name: "ok" for s in gpu_check.STEPS}
    steps = report["steps"]
    for name in ("train_fp16", "train_bf16", "ddp"):
        assert (steps[name]["requested_amp"], steps[name]["amp"]) == ("bf16" if name == "train_bf16" else "fp16", "off")
        assert steps[name]["iterations"] == 2 and steps[name]["s_per_iteration"] > 0
        assert all(gpu_check.is_finite(steps[name][k]) for k in ("train_loss", "val_loss", "last_iteration_loss"))
    assert (steps["ddp"]["processes"], steps["ddp"]["backend"]) == (2, "gloo")
    assert steps["predict_tta"]["cases"] == 1 and steps["predict_tta"]["tta"] is True
    oom = steps["oom_fallback"]
    assert oom["labels_equal"] and oom["differing_voxels"] == 0
    assert len(oom["fallback_log"]) == oom["forced_failures"] == 1 and "Out of memory on cpu" in oom["fallback_log"][0]
    assert [run["configuration"] for run in steps["bench_training"]["report"]["runs"]] == ["2d"]
    assert not Path(report["workdir"]).exists()  # the temporary work folder is removed
