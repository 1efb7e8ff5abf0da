"""The real nnU-Net v2 trainer's time per training iteration, for ``bench_training.py --nnunet-python PY``.

nnU-Net runs in its own virtual environment (see ``compare_nnunet.py`` for how to make one), with its own
defaults: ``nnUNetv2_plan_and_preprocess -d <id> -c 3d_fullres`` on the same converted raw dataset, then
``nnUNetTrainer`` (fold 0, CPU) through its own ``on_train_start`` (data augmentation in its background workers,
``nnUNet_n_proc_DA`` as its default gives on this machine) and ``train_step``. Timed per iteration: the wait for
the batch and the step. Nothing of AutoSegNet runs in that process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path

TIMING = """
import json, os, sys, time, torch
from nnunetv2.run.run_training import get_trainer_from_args
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
warmup, iterations = int(sys.argv[1]), int(sys.argv[2])
trainer = get_trainer_from_args(sys.argv[3], "3d_fullres", 0, "nnUNetTrainer", "nnUNetPlans",
                                device=torch.device("cpu"))
trainer.on_train_start()
trainer.on_train_epoch_start()
waits, steps = [], []
for index in range(warmup + iterations):
    start = time.perf_counter()
    batch = next(trainer.dataloader_train)
    fetched = time.perf_counter()
    trainer.train_step(batch)
    if index >= warmup:
        waits.append(fetched - start)
        steps.append(time.perf_counter() - fetched)
manager = trainer.configuration_manager
print(json.dumps({"waits": waits, "steps": steps, "batch_size": manager.batch_size,
                  "patch_size": list(manager.patch_size), "torch_threads": torch.get_num_threads(),
                  "n_proc_DA": get_allowed_n_proc_DA()}), flush=True)
os._exit(0)  # do not wait for nnU-Net's augmentation workers to wind down
"""


def _run_timing(python: Path, env: dict, work: Path, warmup: int, iterations: int, dataset_id: str) -> dict:
    """Run :data:`TIMING` in its own process group and end the whole group once the result line is read: nnU-Net's
    augmentation workers outlive their parent's ``os._exit`` and would keep the pipe open."""
    log = work / "nnunet_timing.log"
    with open(log, "w") as errors:
        process = subprocess.Popen([str(python), "-c", TIMING, str(warmup), str(iterations), dataset_id], env=env,
                                   stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True)
        try:
            for line in process.stdout:
                if line.startswith("{") and '"waits"' in line:
                    return json.loads(line)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return {"error": log.read_text()[-2000:]}


def measure_nnunet(python: Path, raw: Path, dataset_id: str, work: Path, threads: int, warmup: int,
                   iterations: int) -> dict:
    """Plan and preprocess with nnU-Net, then time its trainer; returns medians (s) and its settings."""
    env = {**os.environ, "nnUNet_raw": str(raw), "nnUNet_preprocessed": str(work / "preprocessed"),
           "nnUNet_results": str(work / "results"), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    planner = Path(python).parent / "nnUNetv2_plan_and_preprocess"
    subprocess.run([str(planner), "-d", dataset_id, "-c", "3d_fullres", "-np", str(threads)], env=env,
                   check=True, capture_output=True, text=True)
    preprocess_s = time.perf_counter() - started
    timing = _run_timing(python, env, work, warmup, iterations, dataset_id)
    if "error" in timing:
        return timing
    wait, step = statistics.median(timing["waits"]), statistics.median(timing["steps"])
    iteration = statistics.median(w + s for w, s in zip(timing["waits"], timing["steps"]))
    return {"command": "nnUNetv2_plan_and_preprocess -c 3d_fullres, then nnUNetTrainer fold 0 on the CPU",
            "batch_size": timing["batch_size"], "patch_size": timing["patch_size"],
            "torch_threads": timing["torch_threads"], "n_proc_DA": timing["n_proc_DA"],
            "plan_and_preprocess_s": round(preprocess_s, 1), "timed_iterations": len(timing["steps"]),
            "wait_s": round(wait, 3), "step_s": round(step, 3), "iteration_s": round(iteration, 3),
            "s_per_sample": round(iteration / timing["batch_size"], 3)}
