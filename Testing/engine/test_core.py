"""Core plumbing: CLI command table, progress events, atomic writes, worker pool, plans.json schema."""

from __future__ import annotations

import io
import json
import os
import signal

import pytest

from AutoSegNetLib.cli import COMMANDS, build_parser, main
from AutoSegNetLib.errors import AutoSegNetError, DatasetFormatError
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans
from AutoSegNetLib.progress import ProgressReporter, read_status
from AutoSegNetLib.utils.atomic import atomic_path, read_json, write_json
from AutoSegNetLib.utils.workers import WorkerError, run_parallel

ARCHITECTURE_COMMANDS = {"convert", "verify", "fingerprint", "plan", "preprocess", "plan-and-preprocess", "train",
                         "predict", "evaluate", "ensemble", "postprocess", "find-best", "export-model",
                         "install-model", "import-nnunet", "import-staged", "demo", "plot-overlays",
                         "download-model", "models", "move-plans", "serve", "version", "web"}


def test_help_lists_every_command_of_the_architecture(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ARCHITECTURE_COMMANDS:
        assert name in out
    assert {c.name for c in COMMANDS} == ARCHITECTURE_COMMANDS


def test_common_options_work_before_and_after_the_command():
    parser = build_parser()
    before = parser.parse_args(["--workspace", "w1", "--progress", "json", "demo"])
    after = parser.parse_args(["demo", "--workspace", "w2"])
    assert (before.workspace, before.progress) == ("w1", "json")
    assert (after.workspace, after.progress) == ("w2", "text")


def test_json_progress_events_are_one_object_per_line_and_the_status_file_holds_the_latest(tmp_path):
    stream = io.StringIO()
    reporter = ProgressReporter("json", stream, tmp_path / "status.json")
    reporter.emit("epoch", epoch=1, epochs=3, train_loss=0.5)
    reporter.emit("done", message="finished")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["epoch", "done"]
    assert lines[0]["epoch"] == 1 and lines[0]["train_loss"] == 0.5
    assert read_status(tmp_path / "status.json")["event"] == "done"
    assert read_status(tmp_path / "missing.json") is None


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "data.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("crash")
    assert read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_read_json_names_the_file_and_line_of_a_syntax_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n "a": 1,\n}')
    with pytest.raises(DatasetFormatError, match=r"bad.json is not valid JSON \(line 3"):
        read_json(bad)


def _square(x: int) -> int:
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is bad")
    return x


def _die_on_two(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@pytest.mark.parametrize("workers", [0, 2])
def test_worker_pool_returns_every_result(workers):
    assert sorted(r for _, r in run_parallel(_square, range(6), workers)) == [0, 1, 4, 9, 16, 25]


@pytest.mark.parametrize("workers", [0, 2])
def test_worker_error_names_the_item_and_the_error(workers):
    with pytest.raises(WorkerError, match="case_3.*ValueError: three is bad"):
        list(run_parallel(_fail_on_three, range(5), workers, describe=lambda i: f"case_{i}"))


def test_a_killed_worker_fails_the_run_instead_of_hanging():
    with pytest.raises(WorkerError, match="worker process died"):
        list(run_parallel(_die_on_two, range(4), 2))


def _plans() -> Plans:
    conf = ConfigurationPlan(
        name="3d_fullres", data_identifier="plans_3d_fullres", spacing=[1.0, 1.0, 1.0], patch_size=[40, 56, 40],
        batch_size=7, median_image_size=[36.0, 50.0, 35.0], normalization_schemes=["ZScoreNormalization"],
        use_mask_for_norm=[False], batch_dice=False, network={"name": "PlainConvUNet"},
    )
    return Plans("Dataset004_Hippocampus", "plans", "default", [0, 1, 2], [0, 1, 2], [1.0, 1.0, 1.0],
                 [36.0, 50.0, 35.0], "SimpleITKIO", {"0": {"mean": 1.0}}, {"3d_fullres": conf})


def test_plans_round_trip_through_json(tmp_path):
    plans = _plans()
    plans.save(tmp_path / "plans.json")
    assert Plans.load(tmp_path / "plans.json") == plans


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(extra=1), "unknown field 'extra'"),
        (lambda d: d["configurations"]["3d_fullres"].update(patch=[1]),
         "unknown field 'configurations.3d_fullres.patch'"),
        (lambda d: d["configurations"]["3d_fullres"].update(batch_size="7"), "batch_size' should be int"),
        (lambda d: d["configurations"]["3d_fullres"].pop("spacing"),
         "required field 'configurations.3d_fullres.spacing'"),
        (lambda d: d.update(version=99), "plans version 99 is not supported"),
        (lambda d: d.update(format="nnunet"), "field 'format' must be"),
    ],
)
def test_plans_with_wrong_fields_are_rejected_with_the_field_named(mutate, message):
    data = _plans().to_dict()
    mutate(data)
    with pytest.raises(DatasetFormatError, match=message):
        Plans.from_dict(data)


def test_unknown_configuration_error_suggests_the_close_name():
    with pytest.raises(AutoSegNetError, match="Did you mean '3d_fullres'"):
        _plans().configuration("3d_fulres")
