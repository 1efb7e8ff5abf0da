"""Benchmark: predicting one CT-sized volume with a CT-sized network, as a whole command (GPU or CPU).

A model with nnU-Net's usual 3d_fullres topology for CT (patch 128x128x128, 6 stages with 32-64-128-256-320-320
features, 2 convolutions per stage, 5 classes) and random weights is written to a temporary model folder; a
synthetic volume (default 300x512x512 voxels at the model's 1 mm spacing, so nothing is resampled) is predicted
with ``python -m AutoSegNetLib predict --model-folder ... -f 0`` in a fresh process, with and without test-time
mirroring. Printed JSON: per mode the wall seconds of the whole command (start-up included), the seconds the
engine reports for the case, and the sliding-window tiles.

    python Testing/benchmarks/bench_predict_large.py --device cuda                 # on a GPU machine
    python Testing/benchmarks/bench_predict_large.py --device cpu --shape 64 160 160 --modes no_tta   # CPU, small
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
sys.path.insert(0, str(REPO))
FEATURES = [32, 64, 128, 256, 320, 320]
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney": 3, "aorta": 4}


def build_ct_model(results: Path) -> Path:
    """A model folder with a CT-like 3d_fullres plan (1 mm isotropic, patch 128^3) and He-initialised weights."""
    import torch

    from AutoSegNetLib.dataset.dataset_json import DatasetJson
    from AutoSegNetLib.layout import CHECKPOINT_FORMAT
    from AutoSegNetLib.network import NetworkSpec, build_network
    from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans

    stages = len(FEATURES)
    spec = NetworkSpec("PlainConvUNet", 3, FEATURES, [[3, 3, 3]] * stages, [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
                       [2] * stages, [2] * (stages - 1))
    configuration = ConfigurationPlan(
        name="3d_fullres", data_identifier="nnUNetPlans_3d_fullres", spacing=[1.0, 1.0, 1.0],
        patch_size=[128, 128, 128], batch_size=2, median_image_size=[300.0, 512.0, 512.0],
        normalization_schemes=["CTNormalization"], use_mask_for_norm=[False], batch_dice=False,
        network=spec.to_dict())
    intensity = {"0": {"mean": 100.0, "std": 50.0, "percentile_00_5": -100.0, "percentile_99_5": 300.0}}
    plans = Plans(
        dataset_name="Dataset990_LargeCT", plans_name="nnUNetPlans", planner="benchmark", transpose_forward=[0, 1, 2],
        transpose_backward=[0, 1, 2], original_median_spacing=[1.0, 1.0, 1.0],
        original_median_shape=[300.0, 512.0, 512.0], image_reader_writer="SimpleITKIO",
        foreground_intensity_properties=intensity, configurations={"3d_fullres": configuration})
    folder = results / "Dataset990_LargeCT" / "AutoSegNet__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    plans.save(folder / "plans.json")
    DatasetJson({"0": "CT"}, LABELS, 1, ".nii.gz").save(folder / "dataset.json")
    torch.manual_seed(0)
    network = build_network(spec, 1, len(LABELS), deep_supervision=True)
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "network_weights": network.state_dict(),
                "configuration": "3d_fullres", "inference_allowed_mirroring_axes": [0, 1, 2]},
               folder / "fold_0" / "checkpoint_final.pth")
    return folder


def write_volume(folder: Path, shape: list[int]) -> Path:
    """A noisy CT-like volume (Z, Y, X) at 1 mm with a few bright blobs, as ``case_0000.nii.gz``."""
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    volume = rng.normal(0, 30, shape).astype(np.float32)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for k in range(4):
        centre = rng.uniform(0.2, 0.8, 3) * np.array(shape)
        blob = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < (min(shape) / 6) ** 2
        volume[blob] += 60 * (k + 1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "case_0000.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(volume.astype(np.int16)), str(path))
    return path


def run_mode(model: Path, images: Path, output: Path, device: str, tta: bool, workspace: Path) -> dict:
    """One whole ``predict`` command in a fresh process; wall seconds, and what its JSON events report."""
    command = [sys.executable, "-m", "AutoSegNetLib", "--workspace", str(workspace), "--progress", "json",
               "predict", "-i", str(images), "-o", str(output), "--model-folder", str(model), "-f", "0",
               "--device", device, *([] if tta else ["--no-tta"])]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        return {"error": result.stderr[-3000:], "wall_s": round(wall, 2)}
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    record = {"wall_s": round(wall, 2), "written": sorted(p.name for p in output.glob("*.nii.gz"))}
    for event in events:
        if event.get("event") in ("case", "done") and "seconds" in event:
            record[f"{event['event']}_s"] = event["seconds"]
        if "tiles" in event:
            record["tiles"] = event["tiles"]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512], help="volume size Z Y X (voxels)")
    parser.add_argument("--modes", nargs="+", default=["tta", "no_tta"], choices=("tta", "no_tta"))
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode; the fastest is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_predict_large_") as tmp:
        root = Path(tmp)
        model = build_ct_model(root / "results")
        images = root / "images"
        write_volume(images, args.shape)
        report = {"benchmark": "predict_large", "device": args.device, "shape_zyx": args.shape,
                  "voxels_millions": round(args.shape[0] * args.shape[1] * args.shape[2] / 1e6, 1),
                  "patch_size": [128, 128, 128], "features": FEATURES, "classes": len(LABELS),
                  "cpu_count": os.cpu_count(), "modes": {}}
        for mode in args.modes:
            runs = [run_mode(model, images, root / f"out_{mode}_{k}", args.device, mode == "tta", root / "ws")
                    for k in range(args.repeats)]
            ok = [r for r in runs if "error" not in r]
            report["modes"][mode] = min(ok, key=lambda r: r["wall_s"]) if ok else runs[0]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
