"""Benchmark training iterations on the CPU (or a GPU) for Hippocampus-like plans; prints one JSON object.

    python Testing/benchmarks/bench_training.py [--configurations 3d_fullres 2d] [--variants nnunet fast]
        [--iterations 5] [--warmup 2] [--threads 2] [--workers 0] [--batch-2d 366] [--data synthetic|hippocampus]
        [--device cpu|cuda] [--json]
    python Testing/benchmarks/bench_training.py --dice-iterations 300   # + Dice on held-out Hippocampus cases
    python Testing/benchmarks/bench_training.py --dice-iterations 300 --dice-amp off bf16   # does bf16 cost Dice?

Plans (nnU-Net v2's for Task04 Hippocampus): ``3d_fullres`` patch 40x56x40, batch 7, plain U-Net with features
[32, 64, 128, 256], strides [1, 2, 2, 2], 2 convs per stage; ``2d`` patch 56x40 with the same topology in 2D.
Data: synthetic preprocessed cases with Hippocampus shapes (about 36x50x35, two labels), or with
``--data hippocampus`` the shared MSD cases converted and preprocessed by the engine.

Variants (each runs in a fresh process, so peak RSS and compile caches do not leak between them):
- ``nnunet``: the reference recipe as nnU-Net runs it (contiguous NCDHW tensors, InstanceNorm kernel);
- ``fast``: this engine's CPU default (channels-last memory, InstanceNorm computed by the GroupNorm kernel);
- ``fast-compile``: ``fast`` + ``torch.compile`` (first iterations include compilation; not counted);
- ``bf16``: ``fast`` + bfloat16 autocast (only worth it on CPUs with native bf16).

Per iteration: ``wait_s`` (time the loop waited for the batch: augmentation when it runs in this process),
``compute_s`` (forward, loss, backward, clipping, SGD step), their sum, and the process CPU time. Reported are
medians over the timed iterations, the peak RSS of the process (and of its data workers), and the speed-up
against nnU-Net v2.8.1's ~9.0 s per 3d_fullres iteration on this machine (2 threads, batch 7). On a shared
machine wall times grow with other load; ``cpu_s`` (all threads of the process) is the steadier figure.

``--device cuda`` runs the same measurements on the GPU (``TrainingConfig(device="cuda")``, amp auto: float16
autocast + GradScaler, unless a variant sets it), with CUDA synchronised before every clock reading; each run then
adds ``gpu`` and ``peak_gpu_memory_mb`` and the report ``device``; the speed-ups against nnU-Net's CPU time are
left out. ``--json`` prints the report on one line (for scripts such as ``scripts/gpu_check.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
SHARED_DATA = Path(os.environ.get("AUTOSEGNET_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
NNUNET_3D_S_PER_ITERATION = 9.0  # an earlier session's figure; --nnunet-python measures the real trainer (7.0 s)
DATASET = "Dataset004_Hippocampus"
VARIANTS = {
    "nnunet": {"channels_last": False, "fast_norm": False},
    "fast": {"channels_last": True, "fast_norm": True},
    "fast-compile": {"channels_last": True, "fast_norm": True, "compile": True},
    "bf16": {"channels_last": True, "fast_norm": True, "amp": "bf16"},
}


def network(ndim: int) -> dict:
    return {"name": "PlainConvUNet", "ndim": ndim, "features_per_stage": [32, 64, 128, 256],
            "kernel_sizes": [[3] * ndim] * 4, "strides": [[1] * ndim] + [[2] * ndim] * 3,
            "n_conv_per_stage": [2] * 4, "n_conv_per_stage_decoder": [2] * 3}


def hippocampus_plans(batch_2d: int):
    from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans

    def conf(name: str, patch: list[int], batch: int) -> ConfigurationPlan:
        ndim = len(patch)
        return ConfigurationPlan(
            name=name, data_identifier="AutoSegNetPlans_3d" if ndim == 3 else "AutoSegNetPlans_2d",
            spacing=[1.0] * ndim, patch_size=patch, batch_size=batch, median_image_size=[36.0, 50.0, 35.0][-ndim:],
            normalization_schemes=["ZScoreNormalization"], use_mask_for_norm=[False], batch_dice=ndim == 3,
            network=network(ndim))

    return Plans(dataset_name=DATASET, plans_name="AutoSegNetPlans", planner="benchmark", transpose_forward=[0, 1, 2],
                 transpose_backward=[0, 1, 2], original_median_spacing=[1.0, 1.0, 1.0],
                 original_median_shape=[36.0, 50.0, 35.0], image_reader_writer="SimpleITKIO",
                 foreground_intensity_properties={},
                 configurations={"3d_fullres": conf("3d_fullres", [40, 56, 40], 7),
                                 "2d": conf("2d", [56, 40], batch_2d)})


def synthetic_workspace(root: Path, batch_2d: int, n_cases: int = 40):
    """Hippocampus-like preprocessed cases (z-scored image, two adjacent ellipsoid labels), no raw images."""
    import numpy as np

    from AutoSegNetLib.dataset.dataset_json import DatasetJson
    from AutoSegNetLib.preprocessing.incremental import preprocessing_hash
    from AutoSegNetLib.preprocessing.manifest import Manifest
    from AutoSegNetLib.preprocessing.storage import save_case
    from AutoSegNetLib.workspace import Workspace

    workspace = Workspace.at(root).create()
    pre = workspace.preprocessed / DATASET
    pre.mkdir(parents=True, exist_ok=True)
    DatasetJson(channel_names={"0": "MRI"}, labels={"background": 0, "Anterior": 1, "Posterior": 2},
                num_training=n_cases, file_ending=".nii.gz").save(pre / "dataset.json")
    (workspace.raw / DATASET).mkdir(parents=True, exist_ok=True)
    plans = hippocampus_plans(batch_2d)
    plans.save(pre / "plans.json")
    rng = np.random.default_rng(0)
    for index in range(n_cases):
        shape = tuple(int(s) for s in rng.integers([32, 45, 31], [40, 56, 40]))
        grid = np.indices(shape).astype(np.float32)
        centre = np.array(shape)[:, None, None, None] / 2
        radius = np.array([5.0, 12.0, 5.0])[:, None, None, None]
        inside = (((grid - centre) / radius) ** 2).sum(0) <= 1
        seg = np.where(inside, np.where(grid[1] < centre[1], 1, 2), 0).astype(np.int16)
        image = (seg * 0.8 + rng.normal(0, 0.5, shape)).astype(np.float32)
        locations = {str(k): np.c_[np.zeros(int((seg == k).sum()), int), np.argwhere(seg == k)] for k in (1, 2)}
        for conf in plans.configurations.values():
            save_case(pre / conf.data_identifier, f"hippocampus_{index:03d}", image[None], seg[None],
                      {"class_locations": locations})
    dataset_json = DatasetJson.load(pre / "dataset.json")
    for conf in plans.configurations.values():  # training requires the record that the folder is complete
        Manifest({f"hippocampus_{i:03d}": "synthetic" for i in range(n_cases)},
                 preprocessing_hash(plans, conf, dataset_json)).save(pre / conf.data_identifier)
    return workspace


def hippocampus_workspace(root: Path, batch_2d: int):
    """The shared MSD Hippocampus cases, converted and preprocessed by the engine with the reference plans."""
    from AutoSegNetLib.dataset.convert_msd import convert_msd
    from AutoSegNetLib.preprocessing.preprocess_dataset import preprocess_dataset
    from AutoSegNetLib.workspace import Workspace

    workspace = Workspace.at(root).create()
    convert_msd(workspace, SHARED_DATA / "Task04_Hippocampus", num_workers=2, overwrite=True)
    name = workspace.resolve_dataset("4")
    pre = workspace.preprocessed / name
    pre.mkdir(parents=True, exist_ok=True)
    plans = hippocampus_plans(batch_2d)
    plans.dataset_name = name
    plans.save(pre / "plans.json")
    preprocess_dataset(workspace, name, ["3d_fullres", "2d"], num_workers=2)
    return workspace


# ----- one measurement (runs in a child process) ---------------------------------------------------------------
def synchronize(device) -> None:
    """Wait for the GPU's queued work, so that a clock reading includes it (no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_fields(device) -> dict:
    """The GPU's name and this process's peak allocated GPU memory (MiB); nothing on the CPU."""
    import torch

    if device.type != "cuda":
        return {}
    return {"gpu": torch.cuda.get_device_name(device),
            "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20)}


def measure(workspace_root: str, configuration: str, variant: str, iterations: int, warmup: int, threads: int,
            workers: int, device: str = "cpu") -> dict:
    import torch

    from AutoSegNetLib.training import TrainingConfig
    from AutoSegNetLib.training.components import make_batch_sources, make_components
    from AutoSegNetLib.training.fold_setup import prepare_fold
    from AutoSegNetLib.training.loader import BatchLoader
    from AutoSegNetLib.training.runtime import make_runtime
    from AutoSegNetLib.training.step import train_step
    from AutoSegNetLib.workspace import Workspace

    torch.set_num_threads(threads)
    settings = {"amp": "off" if device == "cpu" else "auto", **VARIANTS[variant]}  # a variant may set amp
    config = TrainingConfig(device=device, num_workers=workers, **settings)
    runtime = make_runtime(config.device, config.amp, config.channels_last)
    setup = prepare_fold(Workspace.at(workspace_root), "4", configuration, 0)
    components = make_components(setup, config, runtime)
    sources, _ = make_batch_sources(setup, config)
    records = []
    with BatchLoader(sources, workers) as loader:
        batches = iter(loader.batches("train", range(warmup + iterations)))
        for index in range(warmup + iterations):
            synchronize(runtime.device)
            started, cpu = time.perf_counter(), time.process_time()
            batch = next(batches)
            got = time.perf_counter()
            loss = float(train_step(components, batch))
            synchronize(runtime.device)
            done = time.perf_counter()
            if index >= warmup:
                records.append({"wait_s": got - started, "compute_s": done - got, "iteration_s": done - started,
                                "cpu_s": time.process_time() - cpu, "loss": loss})
            elif index == 0:
                first_s = done - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    median = {k: round(statistics.median(r[k] for r in records), 3) for k in ("wait_s", "compute_s", "iteration_s",
                                                                              "cpu_s")}
    return {"configuration": configuration, "variant": variant, "batch_size": setup.plan.batch_size,
            "patch_size": setup.plan.patch_size, "threads": threads, "workers": workers, "timed_iterations": iterations,
            "first_iteration_s": round(first_s, 2), **median, "peak_rss_mb": round(own),
            "peak_worker_rss_mb": round(children) if workers else None, **gpu_fields(runtime.device),
            "losses": [round(r["loss"], 4) for r in records]}


def dice_run(workspace_root: str, iterations: int, threads: int, device: str = "cpu", amp: str = "auto") -> dict:
    """Train 3d_fullres fold 0 for ``iterations`` steps (the device's defaults, autocast ``amp``) and validate on
    its held-out cases."""
    import torch

    from AutoSegNetLib.progress import ProgressReporter
    from AutoSegNetLib.training import TrainingConfig, train
    from AutoSegNetLib.utils.atomic import read_json
    from AutoSegNetLib.workspace import Workspace

    torch.set_num_threads(threads)
    epochs = max(1, iterations // 50)
    config = TrainingConfig(device=device, epochs=epochs, iterations_per_epoch=iterations // epochs, val_iterations=5,
                            num_workers=0, save_every=1000, amp=amp)
    started = time.perf_counter()
    folder = train(Workspace.at(workspace_root), "4", "3d_fullres", 0, config, ProgressReporter("none"))
    summary = read_json(folder / "fold_0" / "validation" / "summary.json")
    return {"amp": amp, "iterations": epochs * (iterations // epochs), "epochs": epochs, "model_folder": str(folder),
            "wall_s": round(time.perf_counter() - started), "validation_cases": summary["num_cases"],
            "space": summary["space"],
            "dice": {summary["labels"][k]: round(v["Dice"], 4) for k, v in summary["mean"].items()},
            "foreground_mean_dice": round(summary["foreground_mean"]["Dice"], 4)}


# ----- driver ----------------------------------------------------------------------------------------------------
def child(args: argparse.Namespace, *extra: str) -> dict:
    command = [sys.executable, __file__, "--workspace", args.workspace, "--threads", str(args.threads),
               "--device", args.device, *extra]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        return {"error": result.stderr[-2000:], "command": extra}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configurations", nargs="+", default=["3d_fullres", "2d"])
    parser.add_argument("--variants", nargs="+", default=["nnunet", "fast"], choices=sorted(VARIANTS))
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[0])
    parser.add_argument("--batch-2d", type=int, default=366, help="2d batch size (nnU-Net's plan: 366)")
    parser.add_argument("--data", choices=("synthetic", "hippocampus"), default="synthetic")
    parser.add_argument("--dice-iterations", type=int, default=0, help="also train this many 3d_fullres iterations "
                        "on the shared Hippocampus cases and report the held-out Dice (implies --data hippocampus)")
    parser.add_argument("--dice-amp", nargs="+", default=["auto"], choices=("auto", "off", "bf16", "fp16"),
                        help="one Dice training per autocast mode, each in its own copy of the workspace "
                        "(e.g. off bf16: does bfloat16 cost accuracy?)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (trained Dice models included)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where to train (default cpu; cuda: amp auto, CUDA synchronised before each clock)")
    parser.add_argument("--nnunet-python", type=Path, help="also time the real nnU-Net trainer from this venv's "
                        "python (implies --data hippocampus; see nnunet_training_reference.py)")
    parser.add_argument("--json", action="store_true", help="print the report on one line")
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "measure":
            configuration, variant, iterations, warmup, workers = rest
            out = measure(args.workspace, configuration, variant, int(iterations), int(warmup), args.threads,
                          int(workers), args.device)
        else:
            out = dice_run(args.workspace, int(rest[0]), args.threads, args.device, rest[1])
        print(json.dumps(out))
        return
    with work_folder(args.keep) as tmp:
        data = "hippocampus" if args.dice_iterations or args.nnunet_python else args.data
        started = time.perf_counter()
        make = hippocampus_workspace if data == "hippocampus" else synthetic_workspace
        make(Path(tmp), args.batch_2d)
        args.workspace = tmp
        report = {"benchmark": "training", "data": data, "data_setup_s": round(time.perf_counter() - started, 1),
                  "cpu_count": os.cpu_count(), "load_average_start": [round(x, 2) for x in os.getloadavg()],
                  "nnunet_reference_3d_fullres_s_per_iteration": NNUNET_3D_S_PER_ITERATION, "runs": []}
        if args.device != "cpu":
            report["device"] = args.device
        for configuration in args.configurations:
            for variant in args.variants:
                for workers in args.workers:
                    run = child(args, "--child", "measure", configuration, variant, str(args.iterations),
                                str(args.warmup), str(workers))
                    if configuration == "3d_fullres" and "iteration_s" in run and args.device == "cpu":
                        run["speedup_vs_nnunet_wall"] = round(NNUNET_3D_S_PER_ITERATION / run["iteration_s"], 2)
                        run["speedup_vs_nnunet_cpu"] = round(2 * NNUNET_3D_S_PER_ITERATION / run["cpu_s"], 2)
                    report["runs"].append(run)
        if args.dice_iterations:
            report["dice"] = [dice(args, Path(tmp), amp) for amp in args.dice_amp]
        if args.nnunet_python:
            report["nnunet_real"] = real_nnunet(args, Path(tmp))
            compare_with_real_nnunet(report)
        report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=None if args.json else 1))


@contextlib.contextmanager
def work_folder(keep: Path | None) -> Iterator[str]:
    """``keep`` (created, kept afterwards) or a temporary folder removed afterwards."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
            yield tmp
    else:
        keep.mkdir(parents=True, exist_ok=True)
        yield str(keep.resolve())


def dice(args: argparse.Namespace, root: Path, amp: str) -> dict:
    """One Dice training in ``root/dice_<amp>``, a copy of the benchmark workspace without its results."""
    copy = root / f"dice_{amp}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy, ignore=lambda folder, names: [n for n in names if n.startswith("dice_")
                                                             or (Path(folder) == root and n == "results")])
    return child(argparse.Namespace(**{**vars(args), "workspace": str(copy)}), "--child", "dice",
                 str(args.dice_iterations), amp)


def real_nnunet(args: argparse.Namespace, root: Path) -> dict:
    from AutoSegNetLib.workspace import Workspace
    from Testing.benchmarks.nnunet_training_reference import measure_nnunet

    workspace = Workspace.at(root)
    dataset_id = workspace.resolve_dataset("4")[len("Dataset"):][:3]
    return measure_nnunet(args.nnunet_python, workspace.raw, dataset_id, root / "nnunet", args.threads,
                          args.warmup, args.iterations)


def compare_with_real_nnunet(report: dict) -> None:
    """Speed-ups against the real nnU-Net trainer of the same run, per iteration and per sample (batches may
    differ: nnU-Net's own plan against this benchmark's)."""
    real = report["nnunet_real"]
    if "iteration_s" not in real:
        return
    for run in report["runs"]:
        if run.get("configuration") == "3d_fullres" and "iteration_s" in run:
            run["speedup_vs_real_nnunet_iteration"] = round(real["iteration_s"] / run["iteration_s"], 2)
            run["speedup_vs_real_nnunet_per_sample"] = round(
                real["s_per_sample"] / (run["iteration_s"] / run["batch_size"]), 2)


if __name__ == "__main__":
    main()
