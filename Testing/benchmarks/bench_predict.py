"""Benchmark: predicting Hippocampus cases on the CPU, with and without test-time mirroring.

Prints (and with ``--out`` writes) JSON: per mode the time before the first case (imports + loading the model),
the first case, the mean seconds per later case, the total, and the peak RSS; and how many voxels of the label
maps differ between the fast default and

- ``tta_reference``: the same arithmetic done the straightforward way, one forward pass per mirrored variant
  after the other on one core (must be 0: the default only runs such passes side by side);
- ``*_pytorch``: one pass at a time split over all threads with PyTorch's own kernel choice, as nnU-Net runs it
  (rounding differs in the last bits, so a label can flip where two classes are tied).

    python Testing/benchmarks/bench_predict.py                      # 10 cases, 2 threads, random weights
    python Testing/benchmarks/bench_predict.py --model-folder RESULTS/Dataset004_Hippocampus/AutoSegNet__P__3d_fullres

Without ``--model-folder`` a model with nnU-Net's Hippocampus 3d_fullres topology (patch 40x56x40, features
32-64-128-256, 4 stages) and randomly initialised weights is built in a temporary folder (random weights give
nearly uniform probabilities: the worst case for ties). Each mode runs in a fresh process so that start-up time
and peak memory are its own. Reference on this machine (nnU-Net v2.8.1, 3d_fullres, one fold, 2 threads): 10
cases in about 53 s with mirroring and 18 s without.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "Task04_Hippocampus"
NNUNET_REFERENCE_S = {"tta": 53.0, "no_tta": 18.0}
MODES = {
    # name: (mirroring, compute settings, intra-op threads (None: --threads))
    "tta": (True, "default", None),
    "tta_reference": (True, "reference", 1),   # the same arithmetic, one pass after the other on one core
    "tta_pytorch": (True, "pytorch", None),    # PyTorch's own kernels, every pass on all threads (as nnU-Net)
    "no_tta": (False, "default", None),
    "no_tta_pytorch": (False, "pytorch", None),
}
COMPARED = {"tta": ("tta_reference", "tta_pytorch"), "no_tta": ("no_tta_pytorch",)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MSD Task04_Hippocampus folder")
    parser.add_argument("--model-folder", type=Path, default=None, help="trained model (default: random weights)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode; the fastest is reported")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    result = run_benchmark(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def run_benchmark(args: argparse.Namespace) -> dict:
    images = sorted((args.data / "imagesTr").glob("hippocampus_*.nii.gz"))[: args.cases]
    if len(images) < args.cases:
        sys.exit(f"Need {args.cases} Hippocampus images in {args.data / 'imagesTr'}, found {len(images)}.")
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        tmp = Path(tmp)
        inputs = tmp / "input"
        inputs.mkdir()
        for image in images:  # nnU-Net naming: one channel, _0000
            (inputs / image.name.replace(".nii.gz", "_0000.nii.gz")).symlink_to(image.resolve())
        model = args.model_folder or build_random_model(tmp / "results")
        modes = {}
        for mode in args.modes:
            runs = [run_worker(args, mode, model, inputs, tmp / f"{mode}_{i}") for i in range(args.repeats)]
            modes[mode] = min(runs, key=lambda r: r["total_s"])
            modes[mode]["output"] = modes[mode].pop("output_folder")
        comparison = compare_outputs(modes)
    return summary(args, images, model, modes, comparison)


def run_worker(args: argparse.Namespace, mode: str, model: Path, inputs: Path, output: Path) -> dict:
    threads = MODES[mode][2] or args.threads
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, __file__, "--worker", mode, "--threads", str(threads), "--model-folder",
               str(model), "--input", str(inputs), "--output", str(output)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"worker {mode} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - started, 3)
    result["output_folder"] = str(output)
    return result


def worker(args: argparse.Namespace) -> dict:
    """One mode in this process: import, load, predict every case; times in seconds."""
    start = time.perf_counter()
    import resource

    import torch

    from AutoSegNetLib.inference import (
        PYTORCH_DEFAULT_COMPUTE,
        REFERENCE_COMPUTE,
        ComputeSettings,
        Predictor,
        predict_files,
    )
    from AutoSegNetLib.progress import ProgressReporter

    torch.set_num_threads(args.threads)
    imported = time.perf_counter()
    tta, kind, _ = MODES[args.worker]
    compute = {"default": ComputeSettings(), "reference": REFERENCE_COMPUTE, "pytorch": PYTORCH_DEFAULT_COMPUTE}[kind]
    predictor = Predictor.from_model_folder(args.model_folder, folds=None, device="cpu", tta=tta, compute=compute)
    loaded = time.perf_counter()
    stamps = []

    class Clock(ProgressReporter):
        def emit(self, event: str, **fields):
            if event == "case":
                stamps.append(time.perf_counter())
            return super().emit(event, **fields)

    predict_files(predictor, args.input, args.output, reporter=Clock("none"))
    cases = [b - a for a, b in zip([loaded, *stamps[:-1]], stamps)]
    later = cases[1:] or cases
    return {
        "import_s": round(imported - start, 3),
        "load_model_s": round(loaded - imported, 3),
        "time_before_first_case_s": round(loaded - start, 3),
        "first_case_s": round(cases[0], 3),
        "seconds_per_case": round(sum(later) / len(later), 3),
        "total_s": round(stamps[-1] - start, 3),
        "cases": len(cases),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
    }


def build_random_model(results: Path) -> Path:
    """A model folder with nnU-Net's Hippocampus 3d_fullres plans and randomly initialised (He) weights."""
    import torch

    sys.path.insert(0, str(REPO))
    from AutoSegNetLib.dataset.dataset_json import DatasetJson
    from AutoSegNetLib.layout import CHECKPOINT_FORMAT
    from AutoSegNetLib.network import NetworkSpec, build_network
    from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans

    spec = NetworkSpec("PlainConvUNet", 3, [32, 64, 128, 256], [[3, 3, 3]] * 4,
                       [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], [2] * 4, [2] * 3)
    configuration = ConfigurationPlan(
        name="3d_fullres", data_identifier="nnUNetPlans_3d_fullres", spacing=[1.0, 1.0, 1.0],
        patch_size=[40, 56, 40], batch_size=9, median_image_size=[36.0, 50.0, 35.0],
        normalization_schemes=["ZScoreNormalization"], use_mask_for_norm=[False], batch_dice=True,
        network=spec.to_dict(),
    )
    plans = Plans(
        dataset_name="Dataset004_Hippocampus", plans_name="nnUNetPlans", planner="default", transpose_forward=[0, 1, 2],
        transpose_backward=[0, 1, 2], original_median_spacing=[1.0, 1.0, 1.0], original_median_shape=[36.0, 50.0, 35.0],
        image_reader_writer="SimpleITKIO", foreground_intensity_properties={},
        configurations={"3d_fullres": configuration},
    )
    dataset_json = DatasetJson({"0": "MRI"}, {"background": 0, "Anterior": 1, "Posterior": 2}, 260, ".nii.gz")
    folder = results / "Dataset004_Hippocampus" / "AutoSegNet__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    plans.save(folder / "plans.json")
    dataset_json.save(folder / "dataset.json")
    torch.manual_seed(0)
    network = build_network(spec, 1, 3, deep_supervision=True)
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "network_weights": network.state_dict(),
                "configuration": "3d_fullres", "inference_allowed_mirroring_axes": [0, 1, 2]},
               folder / "fold_0" / "checkpoint_final.pth")
    return folder


def compare_outputs(modes: dict[str, dict]) -> dict:
    """Voxels whose label differs between each fast mode and the runs it is compared with."""
    out = {}
    for mode, others in COMPARED.items():
        for other in others:
            if mode in modes and other in modes:
                differing = differing_voxels(Path(modes[mode]["output"]), Path(modes[other]["output"]))
                out[f"{mode}_vs_{other}_differing_voxels"] = differing
    return out


def differing_voxels(first: Path, second: Path) -> int:
    import numpy as np
    import SimpleITK as sitk

    total = 0
    for path in sorted(first.glob("*.nii.gz")):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(second / path.name)))
        total += int(np.count_nonzero(a != b))
    return total


def summary(args: argparse.Namespace, images: list[Path], model: Path, modes: dict, comparison: dict) -> dict:
    for result in modes.values():
        result.pop("output", None)
    speedups = {
        f"{mode}_speedup_vs_nnunet": round(NNUNET_REFERENCE_S[mode] / modes[mode]["total_s"], 2)
        for mode in ("tta", "no_tta") if mode in modes and len(images) == 10  # the reference is for 10 cases
    }
    return {
        "benchmark": "predict Hippocampus cases on the CPU",
        "cases": len(images),
        "threads": args.threads,
        "model": "random weights, nnU-Net Hippocampus 3d_fullres topology" if args.model_folder is None else str(model),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "voxels_per_case": "about 36 x 50 x 35",
        "modes": modes,
        "segmentations": comparison,
        "nnunet_reference_total_s": NNUNET_REFERENCE_S,
        **speedups,
    }


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
