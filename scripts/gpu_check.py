"""Run the engine's CUDA paths once and report them as ONE JSON object (issue #17, "Ready for the GPU").

    scripts/gpu_check.sh [--device cuda|cpu] [--quick] [--out FILE] [--workdir DIR] [--keep] [--skip STEP ...]
    scripts/gpu_check.sh --list-steps

Steps, in order (each guarded: a failing step records its error and the check goes on):

- ``environment``: torch, CUDA, cuDNN and NCCL versions, the GPUs (name, memory, capability), bf16 support;
- ``dataset``: the demo's synthetic dataset, then ``autosegnet plan-and-preprocess`` (``3d_fullres``);
- ``train_fp16`` / ``train_bf16``: ``autosegnet train --amp fp16|bf16`` for a few iterations (folds 0 and 1),
  s/iteration from the per-step ``iteration`` events, final losses from the fold's ``progress.json`` (finite);
  bf16 is skipped, with the reason, where ``torch.cuda.is_bf16_supported()`` is False;
- ``ddp``: ``torchrun --standalone --nproc-per-node N -m AutoSegNetLib train`` on every visible GPU (NCCL,
  fold 2, global batch = plan's batch x N); skipped with one GPU;
- ``predict_tta``: ``autosegnet predict --device cuda`` with mirroring TTA, timed;
- ``oom_fallback``: in this process, the first network forward calls raise ``torch.OutOfMemoryError`` and the
  sliding window must fall back (one warning per retry) to the same label map as a normal prediction;
- ``bench_training``: ``Testing/benchmarks/bench_training.py --device cuda --json``, its report included.

``--device cpu`` is the dry run of the same steps: amp off instead of fp16 / bf16, DDP with 2 gloo processes,
the out-of-memory errors still simulated. ``--quick`` shrinks everything (5 cases, 2 iterations and no final
validation, 1 test case, one small 2d benchmark run). Exit status 1 if any step failed, else 0 (skipped steps do
not fail the check).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a file: make AutoSegNetLib importable without installing it
    sys.path.insert(0, str(REPO))

log = logging.getLogger("gpu_check")

#: Lines of a failed command's stderr (or of a traceback) kept in the report.
TAIL_LINES = 25
#: The training folds of the steps: each training writes its own fold folder.
FOLDS = {"train_fp16": 0, "train_bf16": 1, "ddp": 2}
#: Logger of the sliding window, whose warnings announce each out-of-memory retry.
SLIDING_WINDOW_LOGGER = "AutoSegNetLib.inference.sliding_window"
BENCH_SCRIPT = REPO / "Testing" / "benchmarks" / "bench_training.py"


# ----- settings, context, errors ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckSettings:
    """What the check runs on (``device``: ``cuda`` or ``cpu``) and how big it is (``quick``)."""

    device: str
    quick: bool
    workdir: Path
    timeout_s: float = 300.0

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def workspace(self) -> Path:
        return self.workdir / "workspace"

    @property
    def num_cases(self) -> int:
        return 5 if self.quick else 12  # 5: one validation case per fold of the 5-fold split

    @property
    def test_cases(self) -> int:
        return 1 if self.quick else 3

    @property
    def iterations(self) -> int:
        return 2 if self.quick else 20

    @property
    def val_iterations(self) -> int:
        return 1 if self.quick else 2

    def amp(self, requested: str) -> str:
        """The ``--amp`` of a training: the requested mode on CUDA, ``off`` in the CPU dry run."""
        return requested if self.cuda else "off"


@dataclass
class CheckContext:
    """What the steps share: the settings, each finished step's record, and what earlier steps made."""

    settings: CheckSettings
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset: str | None = None
    models: dict[str, tuple[Path, int]] = field(default_factory=dict)  # training step -> (model folder, fold)

    def trained_model(self) -> tuple[Path, int]:
        """The model folder and fold of the first training step that passed."""
        for step in ("train_fp16", "train_bf16"):
            if step in self.models:
                return self.models[step]
        raise SkipStepError("no training step passed, so there is no model to predict with")


class SkipStepError(Exception):
    """The step cannot or need not run here; the message says why."""


class CheckFailedError(RuntimeError):
    """A step ran but its result is wrong; ``details`` go into the step's record."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class CommandFailedError(RuntimeError):
    """A subprocess exited with an error or ran past its time limit."""

    def __init__(self, message: str, stderr_tail: list[str]) -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail


@dataclass(frozen=True)
class Step:
    """One guarded step: ``run(context)`` returns the details recorded with ``status: ok``."""

    name: str
    description: str
    run: Callable[[CheckContext], dict[str, Any]]
    needs: tuple[str, ...] = ()


# ----- subprocesses ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandResult:
    stdout: str
    stderr: str
    seconds: float


def tail(text: str, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` non-empty lines of ``text``."""
    return [line for line in text.splitlines() if line.strip()][-lines:]


def run_command(command: Sequence[str], timeout_s: float, env: dict[str, str] | None = None) -> CommandResult:
    """Run ``command`` in the repository root; raise :class:`CommandFailedError` on a non-zero exit or a timeout.

    The command gets its own process group so that a timeout also ends the workers it started (torchrun's ranks,
    data workers)."""
    started = time.perf_counter()
    process = subprocess.Popen(list(command), cwd=REPO, env=env or subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise CommandFailedError(f"timed out after {timeout_s:.0f} s: {shlex.join(command)}", tail(stderr)) from None
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise CommandFailedError(f"exit status {process.returncode}: {shlex.join(command)}", tail(stderr or stdout))
    return CommandResult(stdout, stderr, seconds)


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment with the repository first on ``PYTHONPATH`` (``-m AutoSegNetLib`` finds this checkout)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def engine_command(settings: CheckSettings, *args: str) -> list[str]:
    """``python -m AutoSegNetLib --workspace W --progress json ARGS`` (JSON events on stdout, logs on stderr)."""
    return [sys.executable, "-m", "AutoSegNetLib", *engine_options(settings), *args]


def engine_options(settings: CheckSettings) -> list[str]:
    return ["--workspace", str(settings.workspace), "--progress", "json"]


def parse_events(stdout: str) -> list[dict[str, Any]]:
    """The JSON progress events among the lines of ``stdout`` (other lines are ignored)."""
    events = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        with contextlib.suppress(json.JSONDecodeError):
            event = json.loads(line)
            if isinstance(event, dict) and "event" in event:
                events.append(event)
    return events


def last_event(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The last event of ``kind``; :class:`CheckFailedError` when there is none."""
    found = [e for e in events if e["event"] == kind]
    if not found:
        raise CheckFailedError(f"the command emitted no {kind!r} event")
    return found[-1]


# ----- step: environment -----------------------------------------------------------------------------------------
def step_environment(context: CheckContext) -> dict[str, Any]:
    """Versions and devices; fails when ``--device cuda`` but PyTorch sees no GPU."""
    import torch

    import AutoSegNetLib

    available = torch.cuda.is_available()
    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "autosegnet": AutoSegNetLib.__version__, "torch": torch.__version__, "cuda_version": torch.version.cuda,
        "cuda_available": available, "cudnn_version": torch.backends.cudnn.version(),
        "cudnn_enabled": torch.backends.cudnn.enabled, "nccl_version": nccl_version(),
        "device_count": torch.cuda.device_count() if available else 0,
        "gpus": [gpu_info(i) for i in range(torch.cuda.device_count())] if available else [],
        "bf16_supported": bool(torch.cuda.is_bf16_supported()) if available else None,
    }
    if context.settings.cuda and not available:
        raise CheckFailedError("--device cuda, but this PyTorch sees no CUDA GPU (a CPU-only build, or no driver); "
                          "install the CUDA build of torch or run the dry run with --device cpu.", info)
    return info


def nccl_version() -> str | None:
    import torch

    try:
        version = torch.cuda.nccl.version()
    except Exception:  # CPU builds have no NCCL
        return None
    return ".".join(str(v) for v in version) if isinstance(version, tuple) else str(version)


def gpu_info(index: int) -> dict[str, Any]:
    import torch

    properties = torch.cuda.get_device_properties(index)
    return {"index": index, "name": properties.name, "memory_gib": round(properties.total_memory / 2**30, 1),
            "capability": f"{properties.major}.{properties.minor}",
            "multiprocessors": properties.multi_processor_count}


# ----- step: dataset ---------------------------------------------------------------------------------------------
def step_dataset(context: CheckContext) -> dict[str, Any]:
    """The demo's synthetic dataset, planned and preprocessed by the CLI; the first cases become test images."""
    from AutoSegNetLib.demo.pipeline import CONFIGURATION
    from AutoSegNetLib.demo.synthetic import write_synthetic_dataset
    from AutoSegNetLib.planning.plans import Plans
    from AutoSegNetLib.workspace import Workspace

    settings = context.settings
    workspace = Workspace.at(settings.workspace).create()
    folder = write_synthetic_dataset(workspace, settings.num_cases, seed=0, overwrite=True)
    workers = str(max(1, min(8, os.cpu_count() or 1)))
    result = run_command(engine_command(settings, "plan-and-preprocess", folder.name, "-c", CONFIGURATION,
                                        "-np", workers), settings.timeout_s)
    context.dataset = folder.name
    copy_test_images(folder / "imagesTr", predict_input_folder(settings), settings.test_cases)
    training_config_file(settings).write_text(json.dumps({"iteration_event_every": 1}))
    plan = Plans.load(workspace.preprocessed / folder.name / "plans.json").configurations[CONFIGURATION]
    return {"dataset": folder.name, "cases": settings.num_cases, "configuration": CONFIGURATION,
            "patch_size": plan.patch_size, "batch_size": plan.batch_size, "spacing": plan.spacing,
            "plan_and_preprocess_s": round(result.seconds, 2)}


def copy_test_images(source: Path, target: Path, count: int) -> None:
    """The first ``count`` images of ``source`` (``<case>_0000.nii.gz``) into ``target``, to predict."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*_0000.nii.gz"))[:count]:
        shutil.copy2(path, target / path.name)


def predict_input_folder(settings: CheckSettings) -> Path:
    return settings.workdir / "predict_input"


def training_config_file(settings: CheckSettings) -> Path:
    """``train --config`` file: one ``iteration`` event per step, so that steps can be timed from outside."""
    return settings.workdir / "training_config.json"


# ----- steps: training -------------------------------------------------------------------------------------------
def step_train(context: CheckContext, name: str, amp: str) -> dict[str, Any]:
    """``autosegnet train`` of fold ``FOLDS[name]`` with ``--amp amp`` (``off`` on the CPU), including the final
    validation of the fold's held-out cases (not with ``--quick``)."""
    import torch

    settings = context.settings
    if settings.cuda and amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise SkipStepError(f"torch.cuda.is_bf16_supported() is False on {torch.cuda.get_device_name(0)}")
    fold = FOLDS[name]
    command = engine_command(settings, *train_arguments(context, fold, settings.amp(amp)))
    record = training_record(run_command(command, settings.timeout_s), fold)
    context.models[name] = (Path(record["model_folder"]), fold)
    return {"requested_amp": amp, "amp": settings.amp(amp), **record}


def train_arguments(context: CheckContext, fold: int, amp: str) -> list[str]:
    """``train DATASET 3d_fullres FOLD`` for one short epoch on the check's device."""
    from AutoSegNetLib.demo.pipeline import CONFIGURATION

    settings = context.settings
    arguments = ["train", str(context.dataset), CONFIGURATION, str(fold), "--device", settings.device, "--amp", amp,
                 "--epochs", "1", "--iterations", str(settings.iterations), "--val-iterations",
                 str(settings.val_iterations), "--config", str(training_config_file(settings))]
    return arguments + (["--no-final-validation"] if settings.quick else [])


def training_record(result: CommandResult, fold: int) -> dict[str, Any]:
    """Timing and losses of a finished training run (its events and its fold's ``progress.json``)."""
    from AutoSegNetLib.layout import PROGRESS_FILE, fold_folder_name
    from AutoSegNetLib.utils.atomic import read_json

    events = parse_events(result.stdout)
    done = last_event(events, "done")
    if done.get("status") != "finished":
        raise CheckFailedError(f"training ended with status {done.get('status')!r}, not 'finished'", {"done": done})
    model_folder = Path(done["model_folder"])
    epoch = read_json(model_folder / fold_folder_name(fold) / PROGRESS_FILE)["epochs"][-1]
    losses = {"train_loss": epoch["train_loss"], "val_loss": epoch["val_loss"],
              "last_iteration_loss": last_event(events, "iteration")["train_loss"]}
    record = {"fold": fold, "device": last_event(events, "stage").get("device"), **iteration_timing(events),
              "epoch_s": round(epoch["epoch_s"], 3), **losses, "wall_s": round(result.seconds, 2),
              "model_folder": str(model_folder)}
    if not all(is_finite(value) for value in losses.values()):
        raise CheckFailedError(f"non-finite loss after training: {losses}", record)
    return record


def iteration_timing(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Seconds per training step: the median gap between consecutive ``iteration`` events (one per step), the
    first step left out (start-up, cuDNN autotuning), and the first step's time after the ``stage`` event."""
    started = last_event(events, "stage")["time"]
    times = [e["time"] for e in events if e["event"] == "iteration"]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    return {"iterations": len(times), "first_iteration_s": round(times[0] - started, 3) if times else None,
            "s_per_iteration": round(statistics.median(gaps), 4) if gaps else None}


def is_finite(value: Any) -> bool:
    """True for a finite number (``progress.json`` writes NaN and infinities as null)."""
    return isinstance(value, (int, float)) and value - value == 0


# ----- step: DDP -------------------------------------------------------------------------------------------------
def step_ddp(context: CheckContext) -> dict[str, Any]:
    """``torchrun --standalone`` training on every visible GPU (NCCL); 2 gloo processes in the CPU dry run."""
    import torch

    settings = context.settings
    processes = torch.cuda.device_count() if settings.cuda else 2
    if processes < 2:
        raise SkipStepError(f"{processes} GPU visible; DDP needs 2 or more (CUDA_VISIBLE_DEVICES?)")
    fold = FOLDS["ddp"]
    batch = plan_batch_size(context) * processes
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
               "-m", "AutoSegNetLib", *engine_options(settings), *train_arguments(context, fold, settings.amp("fp16")),
               "--batch-size", str(batch)]
    env = subprocess_env() if settings.cuda else subprocess_env(OMP_NUM_THREADS="1")
    record = training_record(run_command(command, settings.timeout_s, env), fold)
    return {"processes": processes, "backend": "nccl" if settings.cuda else "gloo", "global_batch_size": batch,
            "requested_amp": "fp16", "amp": settings.amp("fp16"), "finished": True, **record}


def plan_batch_size(context: CheckContext) -> int:
    from AutoSegNetLib.demo.pipeline import CONFIGURATION
    from AutoSegNetLib.planning.plans import Plans

    plans = Plans.load(context.settings.workspace / "preprocessed" / str(context.dataset) / "plans.json")
    return int(plans.configurations[CONFIGURATION].batch_size)


# ----- step: prediction with TTA ---------------------------------------------------------------------------------
def step_predict(context: CheckContext) -> dict[str, Any]:
    """``autosegnet predict`` of the test images with mirroring TTA on the check's device, timed."""
    settings = context.settings
    folder, fold = context.trained_model()
    output = settings.workdir / "predictions"
    command = engine_command(settings, "predict", "-i", str(predict_input_folder(settings)), "-o", str(output),
                             "--model-folder", str(folder), "-f", str(fold), "--device", settings.device)
    result = run_command(command, settings.timeout_s)
    events = parse_events(result.stdout)
    seconds = [e["seconds"] for e in events if e["event"] == "case"]
    written = sorted(p.name for p in output.glob("*.nii.gz"))
    record = {"fold": fold, "tta": True, "cases": len(written), "case_s": seconds,
              "predict_s": last_event(events, "done").get("seconds"), "wall_s": round(result.seconds, 2)}
    if len(written) != settings.test_cases:
        raise CheckFailedError(f"{len(written)} label maps written for {settings.test_cases} test images", record)
    return record


# ----- step: forced out-of-memory fallback -----------------------------------------------------------------------
#: How the reference prediction computes (the CUDA default: one tile per pass, the mirrored variants batched) and
#: how the forced-failure prediction starts (two tiles per pass); one thread for the members in both.
NORMAL_COMPUTE = {"tile_batch": 1, "batch_mirrors": True, "member_threads": 1}
FALLBACK_START_COMPUTE = {**NORMAL_COMPUTE, "tile_batch": 2}


def step_oom_fallback(context: CheckContext) -> dict[str, Any]:
    """Predict one test image normally, then again with the first forward calls raising out-of-memory errors:
    the label maps must be equal and every retry must have logged its warning."""
    import numpy as np

    from AutoSegNetLib.imageio import io_for
    from AutoSegNetLib.inference.files import list_input_cases, read_case

    settings = context.settings
    folder, fold = context.trained_model()
    cases, ending = list_input_cases(predict_input_folder(settings), num_channels=1)
    image, geometry = read_case(io_for(ending), cases[0])
    expected, reference_s = timed_labels(load_predictor(folder, fold, settings.device, NORMAL_COMPUTE), image, geometry)
    failures = forced_failures(settings.device)
    predictor = load_predictor(folder, fold, settings.device, FALLBACK_START_COMPUTE)
    with failing_forwards(predictor.networks, failures) as calls, captured_warnings(SLIDING_WINDOW_LOGGER) as lines:
        got, fallback_s = timed_labels(predictor, image, geometry)
    del predictor
    release_cuda_cache()
    retries = [line for line in lines if "Out of memory" in line]
    record = {"fold": fold, "case": cases[0].name, "forced_failures": failures, "raised": calls["raised"],
              "labels_equal": bool(np.array_equal(expected, got)), "differing_voxels": int((expected != got).sum()),
              "fallback_log": retries, "reference_s": round(reference_s, 2), "fallback_s": round(fallback_s, 2)}
    problems = oom_problems(record)
    if problems:
        raise CheckFailedError("; ".join(problems), record)
    return record


def oom_problems(record: dict[str, Any]) -> list[str]:
    """What is wrong with an ``oom_fallback`` record (empty when the fallback worked)."""
    problems = []
    if record["raised"] != record["forced_failures"]:
        problems.append(f"{record['raised']} of {record['forced_failures']} forced errors were raised")
    if len(record["fallback_log"]) != record["raised"]:
        problems.append(f"{len(record['fallback_log'])} fallback warnings logged for {record['raised']} errors")
    if not record["labels_equal"]:
        problems.append(f"the fallback's label map differs from the normal one in {record['differing_voxels']} "
                        "voxels")
    return problems


def load_predictor(folder: Path, fold: int, device: str, compute: dict[str, Any]) -> Any:
    """The engine's :class:`~AutoSegNetLib.inference.Predictor` for one fold with these compute settings."""
    from AutoSegNetLib.inference import Predictor
    from AutoSegNetLib.inference.compute import ComputeSettings

    return Predictor.from_model_folder(folder, folds=(fold,), device=device, compute=ComputeSettings(**compute))


def timed_labels(predictor: Any, image: Any, geometry: Any) -> tuple[Any, float]:
    """Label map ``(Z, Y, X)`` of one image ``(C, Z, Y, X)`` and the seconds its prediction took."""
    started = time.perf_counter()
    result = predictor.predict_case(image, geometry, return_probabilities=False)
    return result.segmentation, time.perf_counter() - started


def forced_failures(device: str) -> int:
    """Forward calls to fail so that the sliding window's fallback (:func:`fallback_plan`), started with
    ``FALLBACK_START_COMPUTE``, ends at one tile per pass with the mirrored variants batched, accumulating on the
    CPU: the same forward passes as the reference prediction (``NORMAL_COMPUTE``), so the label maps must be
    equal. 2 on CUDA (first on the GPU, then accumulating on the CPU), 1 on the CPU."""
    import torch

    from AutoSegNetLib.inference.sliding_window import WindowAttempt, fallback_plan

    plan = fallback_plan(torch.device(device), FALLBACK_START_COMPUTE["tile_batch"], batch_mirrors=True)
    return plan.index(WindowAttempt(torch.device("cpu"), NORMAL_COMPUTE["tile_batch"], True))


@contextlib.contextmanager
def failing_forwards(networks: Sequence[Any], failures: int) -> Iterator[dict[str, int]]:
    """While active, the first ``failures`` forward calls of ``networks`` (together) raise
    ``torch.OutOfMemoryError``, as a full GPU does; yields the counters ``calls`` and ``raised``."""
    import torch

    error = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    counters = {"calls": 0, "raised": 0}

    def hook(_module: Any, _inputs: Any) -> None:
        counters["calls"] += 1
        if counters["raised"] < failures:
            counters["raised"] += 1
            raise error(f"CUDA out of memory (simulated by gpu_check, {counters['raised']} of {failures})")

    handles = [network.register_forward_pre_hook(hook) for network in networks]
    try:
        yield counters
    finally:
        for handle in handles:
            handle.remove()


class _Collector(logging.Handler):
    """Keeps the messages of the records it receives."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def captured_warnings(logger_name: str) -> Iterator[list[str]]:
    """The messages of WARNING and above logged to ``logger_name`` while active."""
    handler = _Collector(logging.WARNING)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def release_cuda_cache() -> None:
    """Give this process's cached GPU memory back before the next step's processes need it."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----- step: training benchmark ----------------------------------------------------------------------------------
def step_bench(context: CheckContext) -> dict[str, Any]:
    """``bench_training.py --device D --json`` (``--quick``: one 2d run, batch 12, 1 timed iteration)."""
    settings = context.settings
    size = ["--configurations", "2d", "--batch-2d", "12", "--variants", "fast", "--iterations", "1", "--warmup", "1"]
    command = [sys.executable, str(BENCH_SCRIPT), "--device", settings.device, "--json",
               *(size if settings.quick else [])]
    result = run_command(command, settings.timeout_s)
    report = json.loads(tail(result.stdout, 1)[0])
    failed = [run for run in report.get("runs", []) if "error" in run]
    record = {"wall_s": round(result.seconds, 2), "report": report}
    if failed:
        raise CheckFailedError(f"{len(failed)} benchmark run(s) failed", record)
    return record


# ----- the check -------------------------------------------------------------------------------------------------
#: Steps that use the device and the dataset; without a usable device (``environment`` failed) they are skipped.
DEVICE_AND_DATA = ("environment", "dataset")
STEPS: tuple[Step, ...] = (
    Step("environment", "torch / CUDA / cuDNN / NCCL versions, GPUs, bf16 support", step_environment),
    Step("dataset", "synthetic dataset + `autosegnet plan-and-preprocess` (3d_fullres)", step_dataset),
    Step("train_fp16", "`autosegnet train --amp fp16` (off on the CPU), s/iteration, finite losses",
         functools.partial(step_train, name="train_fp16", amp="fp16"), needs=DEVICE_AND_DATA),
    Step("train_bf16", "`autosegnet train --amp bf16` (off on the CPU; skipped without bf16 support)",
         functools.partial(step_train, name="train_bf16", amp="bf16"), needs=DEVICE_AND_DATA),
    Step("ddp", "torchrun --standalone on every GPU (NCCL; 2 gloo processes on the CPU)", step_ddp,
         needs=DEVICE_AND_DATA),
    Step("predict_tta", "`autosegnet predict` with mirroring TTA, timed", step_predict, needs=DEVICE_AND_DATA),
    Step("oom_fallback", "forced out-of-memory errors: fallback logged, labels equal to a normal prediction",
         step_oom_fallback, needs=DEVICE_AND_DATA),
    Step("bench_training", "Testing/benchmarks/bench_training.py --device D --json", step_bench,
         needs=("environment",)),
)


def run_step(step: Step, context: CheckContext, skip: Sequence[str] = ()) -> dict[str, Any]:
    """Run one step, guarded: its record has ``status`` (ok, failed, skipped) and ``seconds``; a failure records
    the error (type, message, stderr or traceback tail) instead of stopping the check."""
    if step.name in skip:
        return {"status": "skipped", "reason": "--skip", "seconds": 0.0}
    missing = [name for name in step.needs if context.results.get(name, {}).get("status") != "ok"]
    if missing:
        return {"status": "skipped", "reason": f"needs step {missing[0]!r}, which did not pass", "seconds": 0.0}
    log.info("%s: %s", step.name, step.description)
    started = time.perf_counter()
    try:
        record = {"status": "ok", **step.run(context)}
    except SkipStepError as reason:
        record = {"status": "skipped", "reason": str(reason)}
    except Exception as error:  # every failure is recorded and the check goes on
        record = {"status": "failed", **getattr(error, "details", {}), "error": describe_error(error)}
    record["seconds"] = round(time.perf_counter() - started, 2)
    log.info("%s: %s in %.1f s", step.name, record["status"], record["seconds"])
    return record


def describe_error(error: BaseException) -> dict[str, Any]:
    """Type, message and the last lines of the command's stderr (or of the traceback)."""
    if isinstance(error, CommandFailedError):
        lines = error.stderr_tail
    else:
        lines = tail("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    return {"type": type(error).__name__, "message": str(error), "stderr_tail": lines}


def run_checks(settings: CheckSettings, steps: Sequence[Step] = STEPS, skip: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``steps`` in order; returns the report (see :func:`report_skeleton`)."""
    context = CheckContext(settings)
    started = time.perf_counter()
    for step in steps:
        context.results[step.name] = run_step(step, context, skip)
    return report_skeleton(settings, context.results, time.perf_counter() - started)


def report_skeleton(settings: CheckSettings, results: dict[str, dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The report: overall ``status`` (failed if any step failed), ``failed_steps`` and each step's record."""
    failed = [name for name, record in results.items() if record["status"] == "failed"]
    return {"check": "gpu_check", "device": settings.device, "quick": settings.quick,
            "status": "failed" if failed else "ok", "failed_steps": failed, "seconds": round(seconds, 1),
            "workdir": str(settings.workdir), "steps": results}


def exit_status(report: dict[str, Any]) -> int:
    """1 if any step failed, else 0."""
    return 1 if report["failed_steps"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda (default), or cpu for the dry run of the same steps")
    parser.add_argument("--quick", action="store_true", help="tiny dataset, 2 iterations without final validation, "
                        "one small benchmark run")
    parser.add_argument("--out", type=Path, help="also write the JSON report to this file")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a temporary folder, removed at the "
                        "end unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument("--skip", nargs="+", default=[], choices=[s.name for s in STEPS], metavar="STEP",
                        help="steps to skip (recorded as skipped); steps that need them are skipped too")
    parser.add_argument("--timeout", type=float, default=300.0, help="time limit of each command, s (default 300)")
    parser.add_argument("--list-steps", action="store_true", help="print the steps as JSON and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_steps:
        sys.stdout.write(json.dumps([{"name": s.name, "description": s.description} for s in STEPS], indent=1) + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="gpu_check: %(message)s", stream=sys.stderr)
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="autosegnet_gpu_check_")) if temporary else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    settings = CheckSettings(args.device, args.quick, workdir, args.timeout)
    try:
        report = run_checks(settings, skip=args.skip)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    write_report(report, args.out)
    return exit_status(report)


def write_report(report: dict[str, Any], out: Path | None) -> None:
    """The report as strict JSON (NaN as null) on stdout and, with ``out``, into that file."""
    from AutoSegNetLib.training.progress_log import json_safe

    text = json.dumps(json_safe(report), indent=1, default=str)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
