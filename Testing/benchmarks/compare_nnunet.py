"""Compare AutoSegNet's prediction with nnU-Net v2's own prediction for the same weights, on the CPU.

The AutoSegNet model folder is written out as an nnU-Net v2 results folder
(``<work>/nnunet_results/<Dataset>/nnUNetTrainer__<plans>__<configuration>/`` with nnU-Net's ``plans.json``,
``dataset.json`` and ``fold_<k>/checkpoint_final.pth`` as ``nnUNetTrainer.save_checkpoint`` writes it); then both
tools predict the same images, each as a whole command in a fresh process (``nnUNetv2_predict -device cpu -npp 1
-nps 1`` and ``python -m AutoSegNetLib predict --device cpu``), with and without test-time mirroring, under
``OMP_NUM_THREADS=MKL_NUM_THREADS=--threads``. Printed (and with ``--out`` written) JSON:

- versions, and the torch threads nnU-Net really uses (``nnUNetv2_predict -device cpu`` calls
  ``torch.set_num_threads(cpu_count())``, prediction caps it at ``nnUNet_def_n_proc`` (8), its export worker
  sets 8);
- per mode the wall seconds of each whole command (start-up included), the speedup, the peak RSS of its largest
  process (``wait4``) and the peak summed PSS of its process tree (sampled every 50 ms; nnU-Net runs preprocessing
  and export in worker processes);
- per mode and case the voxels whose label differs (label maps read with SimpleITK; geometry compared too);
- ``--probabilities``: both tools once more per mode writing probabilities (untimed comparison): the largest
  absolute difference and, at differing voxels, the largest gap between the two most likely classes;
- ``--diagnose``: two variants that isolate the known causes of differences. ``nnunet_float32``: nnU-Net with its
  Gaussian importance map and sliding-window sums in float32 (nnU-Net keeps them in float16, also on the CPU; near
  tile borders the float16 Gaussian underflows and the logits get coarsely rounded). ``autosegnet_logit_average``:
  AutoSegNet's ``predict --average logits``: logits averaged over mirrors, folds and overlapping tiles with the
  softmax after the average, as nnU-Net does (the default averages probabilities, docs/decisions/0009). These two
  should agree to float rounding. ``--average logits`` makes the timed AutoSegNet runs average logits too.

nnU-Net runs in its own virtual environment, e.g. (CPU torch pinned first; never the CUDA wheels)::

    python3 -m venv /tmp/nnunet_ref/venv
    echo torch==2.13.0 > /tmp/nnunet_ref/c.txt
    /tmp/nnunet_ref/venv/bin/pip install -c /tmp/nnunet_ref/c.txt torch==2.13.0
    /tmp/nnunet_ref/venv/bin/pip install -c /tmp/nnunet_ref/c.txt nnunetv2==2.8.1

Usage (from the repository root, with AutoSegNet's own environment)::

    python Testing/benchmarks/compare_nnunet.py --nnunet-python /tmp/nnunet_ref/venv/bin/python
    python Testing/benchmarks/compare_nnunet.py --model-folder RESULTS/Dataset004_Hippocampus/AutoSegNet__P__3d \\
        --cases 10 --repeats 2 --probabilities --diagnose --out compare.json

Without ``--model-folder`` a model with nnU-Net's Hippocampus 3d_fullres topology and random weights is built
(``bench_predict.build_random_model``); random weights give nearly uniform probabilities, the worst case for
every rounding and averaging difference. ``--keep DIR`` keeps the converted model and all outputs and logs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "Task04_Hippocampus"
DEFAULT_NNUNET_PYTHON = Path("/tmp/nnunet_ref/venv/bin/python")
MODES = {"tta": True, "no_tta": False}  # mode name: test-time mirroring on
TRAINER = "nnUNetTrainer"
DNA = "dynamic_network_architectures.architectures.unet"
NNUNET_NETWORKS = {"PlainConvUNet": "n_conv_per_stage", "ResidualEncoderUNet": "n_blocks_per_stage"}
RESAMPLING_FN = "resample_data_or_seg_to_shape"
NNUNET_ANISOTROPY_THRESHOLD = 3.0  # nnunetv2.configuration.ANISO_THRESHOLD
# Runs in the nnU-Net environment: versions and the intra-op threads its CPU prediction ends up with
# (nnUNetv2_predict sets torch.set_num_threads(cpu_count()); prediction caps that at default_num_processes).
NNUNET_INFO = """
import json, multiprocessing
from importlib.metadata import version
import torch
from nnunetv2.configuration import default_num_processes
cpus = multiprocessing.cpu_count()
print(json.dumps({"nnunetv2": version("nnunetv2"), "torch": torch.__version__,
                  "dynamic_network_architectures": version("dynamic_network_architectures"),
                  "cpu_count": cpus, "default_num_processes": default_num_processes,
                  "prediction_threads": min(cpus, default_num_processes)}))
"""
# Diagnostic variant: nnU-Net keeps its Gaussian importance map (compute_gaussian's default dtype) and the
# sliding-window sums (predicted_logits, n_predictions: torch.zeros(..., dtype=torch.half)) in float16, also on
# the CPU; this makes both float32 in the nnU-Net process (nothing else on its CPU path uses torch.half).
NNUNET_FLOAT32_PATCH = (
    "import torch, nnunetv2.inference.predict_from_raw_data as p; g = p.compute_gaussian.__wrapped__; "
    "g.__defaults__ = tuple(torch.float32 if d is torch.float16 else d for d in g.__defaults__); "
    "torch.half = torch.float32\n"
)
FP32 = "nnunet_fp32"
LOGITS = "autosegnet_logit_average"
NNUNET_PREDICT = "import sys; from nnunetv2.inference.predict_from_raw_data import predict_entry_point as m; " \
                 "sys.argv[0] = 'nnUNetv2_predict'; m()"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nnunet-python", type=Path, default=DEFAULT_NNUNET_PYTHON,
                        help="python of the environment with nnunetv2 (default %(default)s)")
    parser.add_argument("--model-folder", type=Path, default=None,
                        help="AutoSegNet model folder (default: random weights, Hippocampus 3d_fullres topology)")
    parser.add_argument("-f", "--fold", default="0", help="fold to predict with (default 0)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MSD Task04_Hippocampus folder")
    parser.add_argument("--images", type=Path, default=None,
                        help="folder of one-channel images to predict instead (<case><ending> or <case>_0000<ending>)")
    parser.add_argument("--cases", type=int, default=10, help="predict the first N images (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS / MKL_NUM_THREADS (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per tool and mode; the fastest counts")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--probabilities", action="store_true",
                        help="also run both tools with probabilities saved and compare them")
    parser.add_argument("--diagnose", action="store_true",
                        help="also run two variants that isolate the known differences: nnU-Net with its Gaussian and "
                        "sliding-window sums in float32 (not float16), and AutoSegNet averaging logits over mirrors "
                        "(softmax after the average, as nnU-Net) instead of probabilities")
    parser.add_argument("--average", choices=("probabilities", "logits"), default="probabilities",
                        help="how AutoSegNet's timed runs average (its `predict --average`; default probabilities)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    result = run_comparison(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def run_comparison(args: argparse.Namespace) -> dict[str, Any]:
    info = nnunet_info(args.nnunet_python)
    args.load_before = [round(v, 2) for v in os.getloadavg()]
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return compare_in(args, args.keep.resolve(), info)
    with tempfile.TemporaryDirectory(prefix="compare_nnunet_") as tmp:
        return compare_in(args, Path(tmp), info)


def compare_in(args: argparse.Namespace, work: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Convert the model, predict with both tools in every mode, compare; everything below ``work``."""
    images = link_inputs(input_images(args), work / "input")
    model = args.model_folder.resolve() if args.model_folder else random_model(work / "autosegnet_results")
    nnunet_model = export_nnunet_model(model, work / "nnunet_results", args.fold)
    models = (model, nnunet_model)
    runs: dict[str, dict[str, Any]] = {}  # timed runs, label maps only
    for mode in args.modes:
        for tool in ("nnunet", "autosegnet"):
            repeats = [predict(tool, args, mode, models, work, False) for _ in range(max(1, args.repeats))]
            runs[f"{tool}_{mode}"] = min(repeats, key=lambda run: run["wall_s"])
    probability_runs = {}  # with probabilities, and the diagnostic variants, for the comparison only
    extra_tools = (("nnunet", "autosegnet") if args.probabilities else ()) + (FP32, LOGITS) * args.diagnose
    for mode in args.modes:
        for tool in extra_tools:
            probability_runs[f"{tool}_{mode}"] = predict(tool, args, mode, models, work, args.probabilities)
    cases = [case_name(p) for p in images]
    ending = images[0].name[len(cases[0]) + len("_0000"):]
    return summary(args, info, model, nnunet_model, cases, ending, runs, probability_runs)


# ----- inputs -----------------------------------------------------------------------------------------------
def input_images(args: argparse.Namespace) -> list[Path]:
    folder = args.images or args.data / "imagesTr"
    images = sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith("."))[: args.cases]
    if len(images) < args.cases:
        sys.exit(f"Need {args.cases} images in {folder}, found {len(images)}.")
    return images


def case_name(image: Path) -> str:
    """``hippocampus_001_0000.nii.gz`` or ``hippocampus_001.nii.gz`` -> ``hippocampus_001``."""
    name = image.name
    for ending in (".nii.gz", ".nrrd", ".mha", ".nii"):
        if name.endswith(ending):
            name = name[: -len(ending)]
            break
    return name[:-5] if name.endswith("_0000") else name


def link_inputs(images: list[Path], folder: Path) -> list[Path]:
    """Symlink the images as ``<case>_0000<ending>`` (one channel), as both tools expect."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():  # --keep: cases of an earlier run
        stale.unlink()
    links = []
    for image in images:
        ending = image.name[len(case_name(image)):].removeprefix("_0000")
        link = folder / f"{case_name(image)}_0000{ending}"
        link.symlink_to(image.resolve())
        links.append(link)
    return links


def random_model(results: Path) -> Path:
    folder = results / "Dataset004_Hippocampus" / "AutoSegNet__nnUNetPlans__3d_fullres"
    if folder.is_dir():  # --keep: built by an earlier run
        return folder
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_predict import build_random_model

    return build_random_model(results)


# ----- model conversion (AutoSegNet -> nnU-Net v2) ----------------------------------------------------------
def export_nnunet_model(model: Path, nnunet_results: Path, fold: str) -> Path:
    """Write ``model`` (fold ``fold``) as nnU-Net's ``<Dataset>/nnUNetTrainer__<plans>__<configuration>/``."""
    import torch

    from AutoSegNetLib.inference.model_folder import ModelFolder

    source = ModelFolder.open(model)
    if source.configuration.previous_stage is not None:
        sys.exit(f"{model} is a cascade stage; this comparison does not run the cascade.")
    plans = nnunet_plans(source.plans, source.configuration_name)
    dataset_json = source.dataset_json.to_dict()
    name = source.configuration_name
    folder = nnunet_results / source.plans.dataset_name / f"{TRAINER}__{source.plans.plans_name}__{name}"
    (folder / f"fold_{fold}").mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    checkpoint = nnunet_checkpoint(source.load_checkpoint(fold), plans, name, fold, dataset_json)
    torch.save(checkpoint, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


def nnunet_plans(plans: Any, configuration: str) -> dict[str, Any]:
    """nnU-Net v2's plans dict holding the one ``configuration`` of our :class:`Plans`."""
    return {
        "dataset_name": plans.dataset_name,
        "plans_name": plans.plans_name,
        "original_median_spacing_after_transp": [float(v) for v in plans.original_median_spacing],
        "original_median_shape_after_transp": [int(round(v)) for v in plans.original_median_shape],
        "image_reader_writer": plans.image_reader_writer,
        "transpose_forward": [int(v) for v in plans.transpose_forward],
        "transpose_backward": [int(v) for v in plans.transpose_backward],
        "configurations": {configuration: nnunet_configuration(plans.configuration(configuration))},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": intensity_properties(plans, configuration),
    }


def intensity_properties(plans: Any, configuration: str) -> dict[str, dict[str, float]]:
    """Per-channel foreground statistics; nnU-Net looks them up for every channel, though only
    ``CTNormalization`` uses them, so channels with another scheme get zeros where the plans have none."""
    properties = {k: dict(v) for k, v in plans.foreground_intensity_properties.items()}
    names = ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")
    for channel, scheme in enumerate(plans.configuration(configuration).normalization_schemes):
        if str(channel) not in properties:
            if scheme == "CTNormalization":
                sys.exit(f"The plans have no foreground intensity properties for CT channel {channel}.")
            properties[str(channel)] = dict.fromkeys(names, 0.0)
    return properties


def nnunet_configuration(conf: Any) -> dict[str, Any]:
    """One ``configurations.<c>`` entry of nnU-Net's plans for our :class:`ConfigurationPlan`."""
    resampling = conf.resampling
    if resampling.anisotropy_threshold != NNUNET_ANISOTROPY_THRESHOLD:
        print(f"warning: anisotropy threshold {resampling.anisotropy_threshold} differs from nnU-Net's "
              f"{NNUNET_ANISOTROPY_THRESHOLD} (fixed there)", file=sys.stderr)

    def resampling_kwargs(is_seg: bool, order: int) -> dict[str, Any]:
        return {"is_seg": is_seg, "order": order, "order_z": resampling.order_z_anisotropic, "force_separate_z": None}

    return {
        "data_identifier": conf.data_identifier,
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": conf.batch_size,
        "patch_size": [int(v) for v in conf.patch_size],
        "median_image_size_in_voxels": [float(v) for v in conf.median_image_size],
        "spacing": [float(v) for v in conf.spacing],
        "normalization_schemes": list(conf.normalization_schemes),
        "use_mask_for_norm": [bool(v) for v in conf.use_mask_for_norm],
        "resampling_fn_data": RESAMPLING_FN,
        "resampling_fn_seg": RESAMPLING_FN,
        "resampling_fn_data_kwargs": resampling_kwargs(False, resampling.order_data),
        "resampling_fn_seg_kwargs": resampling_kwargs(True, resampling.order_seg),
        "resampling_fn_probabilities": RESAMPLING_FN,
        "resampling_fn_probabilities_kwargs": resampling_kwargs(False, resampling.order_probabilities),
        "architecture": nnunet_architecture(conf.network),
        "batch_dice": conf.batch_dice,
    }


def nnunet_architecture(network: dict[str, Any]) -> dict[str, Any]:
    """``architecture`` (dynamic-network-architectures class + kwargs) for our network spec dict, with the
    layer settings our networks are built with (conv bias, InstanceNorm eps 1e-5 affine, LeakyReLU 0.01)."""
    name, ndim = network["name"], int(network["ndim"])
    if name not in NNUNET_NETWORKS:
        sys.exit(f"Network {name!r} has no nnU-Net counterpart (known: {', '.join(NNUNET_NETWORKS)}).")
    return {
        "network_class_name": f"{DNA}.{name}",
        "arch_kwargs": {
            "n_stages": len(network["features_per_stage"]),
            "features_per_stage": list(network["features_per_stage"]),
            "conv_op": f"torch.nn.modules.conv.Conv{ndim}d",
            "kernel_sizes": [list(k) for k in network["kernel_sizes"]],
            "strides": [list(s) for s in network["strides"]],
            NNUNET_NETWORKS[name]: list(network["n_conv_per_stage"]),
            "n_conv_per_stage_decoder": list(network["n_conv_per_stage_decoder"]),
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{ndim}d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def nnunet_checkpoint(ours: dict[str, Any], plans: dict[str, Any], configuration: str, fold: str,
                      dataset_json: dict[str, Any]) -> dict[str, Any]:
    """The dict ``nnUNetTrainer.save_checkpoint`` writes, with our weights (same state-dict keys, see
    docs/decisions/0003) and our allowed mirror axes."""
    axes = ours.get("inference_allowed_mirroring_axes", list(range(len(plans["configurations"][configuration]
                                                                            ["patch_size"]))))
    return {
        "network_weights": ours["network_weights"],
        "optimizer_state": None,
        "grad_scaler_state": None,
        "logging": {},
        "_best_ema": ours.get("best_ema"),
        "current_epoch": int(ours.get("epoch", 0) or 0),
        "init_args": {"plans": plans, "configuration": configuration, "fold": fold if fold == "all" else int(fold),
                      "dataset_json": dataset_json, "device": "cpu"},
        "trainer_name": TRAINER,
        "inference_allowed_mirroring_axes": None if axes is None else tuple(int(a) for a in axes),
    }


# ----- running the tools ------------------------------------------------------------------------------------
def predict(tool: str, args: argparse.Namespace, mode: str, models: tuple[Path, Path], work: Path,
            probabilities: bool) -> dict[str, Any]:
    """Run one tool's whole prediction command (``models``: our model folder, the converted nnU-Net one);
    wall seconds, peak RSS and the output folder."""
    model, nnunet_model = models
    output = work / ("probabilities" if probabilities else "labels") / f"{tool}_{mode}"
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    threads = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    if tool in ("nnunet", FP32):
        command = nnunet_command(args, mode, nnunet_model, work / "input", output, probabilities, tool == FP32)
        env = {**os.environ, **threads, "nnUNet_results": str(work / "nnunet_results"),
               "nnUNet_raw": str(work / "nnunet_raw"), "nnUNet_preprocessed": str(work / "nnunet_preprocessed")}
    else:
        average = "logits" if tool == LOGITS else args.average
        command = autosegnet_command(args, mode, model, work, output, probabilities, average)
        env = {**os.environ, **threads}
    result = timed_run(command, env, output.parent / f"{tool}_{mode}.log")
    return {**result, "output": str(output)}


def nnunet_command(args: argparse.Namespace, mode: str, nnunet_model: Path, inputs: Path, output: Path,
                   probabilities: bool, float32: bool = False) -> list[str]:
    """``nnUNetv2_predict`` for the converted model folder ``<Dataset>/<Trainer>__<plans>__<configuration>``
    (``float32``: with :data:`NNUNET_FLOAT32_PATCH`)."""
    trainer, plans_name, configuration = nnunet_model.name.split("__")
    code = NNUNET_FLOAT32_PATCH + NNUNET_PREDICT if float32 else NNUNET_PREDICT
    command = [str(args.nnunet_python), "-c", code, "-i", str(inputs), "-o", str(output),
               "-d", nnunet_model.parent.name, "-tr", trainer, "-p", plans_name, "-c", configuration, "-f", args.fold,
               "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"]
    if not MODES[mode]:
        command.append("--disable_tta")
    if probabilities:
        command.append("--save_probabilities")
    return command


def autosegnet_command(args: argparse.Namespace, mode: str, model: Path, work: Path, output: Path,
                       probabilities: bool, average: str) -> list:
    command = [sys.executable, "-m", "AutoSegNetLib", "predict", "--workspace", str(work / "autosegnet_workspace"),
               "--progress", "none", "--model-folder", str(model), "-f", args.fold, "-i", str(work / "input"),
               "-o", str(output), "--device", "cpu", "--average", average]
    if not MODES[mode]:
        command.append("--no-tta")
    if probabilities:
        command.append("--save-probabilities")
    return command


def timed_run(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``command`` (cwd: the repository); wall seconds, its peak RSS (the largest single process of its
    tree, from ``wait4``) and the peak summed RSS of the tree (sampled). Exits with the log on failure."""
    with open(log, "w") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
        sampler = TreeMemorySampler(process.pid)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        sampler.stop()
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text()[-4000:]
        sys.exit(f"{' '.join(command[:4])} ... failed (exit {process.returncode}); log {log}:\n{tail}")
    return {"wall_s": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "peak_tree_pss_mb": sampler.peak_mb}


class TreeMemorySampler(threading.Thread):
    """Samples the summed memory of a process and its descendants every 50 ms: PSS (shared pages split among
    the processes sharing them, so libraries loaded by several processes count once), else RSS; needs psutil."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_mb, self._done = pid, None, threading.Event()

    def run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        peak = 0
        while not self._done.wait(0.05):
            total = 0
            try:
                for process in (root, *root.children(recursive=True)):
                    total += _pss_or_rss(process)
            except psutil.Error:
                continue
            peak = max(peak, total)
        self.peak_mb = round(peak / 2**20, 1)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _pss_or_rss(process: Any) -> int:
    try:
        return int(process.memory_full_info().pss)
    except (AttributeError, OSError):
        return int(process.memory_info().rss)


def nnunet_info(python: Path) -> dict[str, Any]:
    """Versions in the nnU-Net environment and the threads its CPU prediction uses."""
    if not python.exists():
        sys.exit(f"No nnU-Net python at {python}; create the environment as the module docstring shows.")
    done = subprocess.run([str(python), "-c", NNUNET_INFO], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{python} cannot import nnunetv2:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----- comparing the outputs --------------------------------------------------------------------------------
def compare_labels(nnunet: Path, ours: Path, cases: list[str], ending: str) -> dict[str, Any]:
    """Per case: voxels whose label differs; whether shape, spacing, origin and direction match."""
    import numpy as np
    import SimpleITK as sitk

    per_case, voxels, geometry_equal = {}, 0, True
    for case in cases:
        a, b = (sitk.ReadImage(str(folder / f"{case}{ending}")) for folder in (nnunet, ours))
        geometry_equal &= a.GetSize() == b.GetSize() and all(
            np.allclose(getter(a), getter(b), atol=1e-6)
            for getter in (sitk.Image.GetSpacing, sitk.Image.GetOrigin, sitk.Image.GetDirection)
        )
        first, second = sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)
        per_case[case] = int(np.count_nonzero(first != second)) if first.shape == second.shape else -1
        voxels += first.size
    total = sum(per_case.values())
    return {"differing_voxels": total, "voxels": voxels, "differing_fraction": round(total / max(voxels, 1), 8),
            "geometry_equal": bool(geometry_equal), "per_case": per_case}


def compare_probabilities(nnunet: Path, ours: Path, cases: list[str], ending: str) -> dict[str, Any]:
    """Largest |p_nnunet - p_ours| over all cases and classes; at the voxels whose label differs, the largest
    gap between the two most likely classes (in each tool's probabilities): a tie measure."""
    import numpy as np
    import SimpleITK as sitk

    max_diff, gaps_ours, gaps_nnunet, differing = 0.0, [0.0], [0.0], 0
    for case in cases:
        p_nnunet, p_ours = (np.load(folder / f"{case}.npz")["probabilities"].astype(np.float64)
                            for folder in (nnunet, ours))
        if p_nnunet.shape != p_ours.shape:
            sys.exit(f"{case}: probability shapes differ: nnU-Net {p_nnunet.shape}, AutoSegNet {p_ours.shape}")
        max_diff = max(max_diff, float(np.abs(p_nnunet - p_ours).max()))
        labels = [sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{case}{ending}"))) for folder in (nnunet, ours)]
        mask = labels[0] != labels[1]
        differing += int(mask.sum())
        if mask.any():
            gaps_ours.append(float(top2_gap(p_ours)[mask].max()))
            gaps_nnunet.append(float(top2_gap(p_nnunet)[mask].max()))
    return {"max_abs_difference": max_diff, "differing_voxels": differing,
            "max_top2_gap_at_differing_voxels": {"autosegnet": max(gaps_ours), "nnunet": max(gaps_nnunet)}}


def top2_gap(probabilities: Any) -> Any:
    """``(K, Z, Y, X)`` -> ``(Z, Y, X)``: most likely minus second most likely class probability."""
    import numpy as np

    ordered = np.sort(probabilities, axis=0)
    return ordered[-1] - ordered[-2]


def diagnose(args: argparse.Namespace, runs: dict[str, dict], variants: dict[str, dict], mode: str,
             cases: list[str], ending: str) -> dict[str, Any]:
    """The diagnostic variants compared with AutoSegNet (as it predicts) and with each other."""
    ours_key = f"autosegnet_{mode}"
    folder = {
        "nnunet_float32": variants[f"{FP32}_{mode}"]["output"],
        "autosegnet": (variants if args.probabilities else runs)[ours_key]["output"],
        "autosegnet_logit_average": variants[f"{LOGITS}_{mode}"]["output"],
    }
    out: dict[str, Any] = {}
    for first, second in (("nnunet_float32", "autosegnet"), ("nnunet_float32", "autosegnet_logit_average")):
        pair = (Path(folder[first]), Path(folder[second]), cases, ending)
        out[f"{first}_vs_{second}"] = {"labels": compare_labels(*pair)}
        if args.probabilities:
            out[f"{first}_vs_{second}"]["probabilities"] = compare_probabilities(*pair)
    return out


def summary(args: argparse.Namespace, info: dict[str, Any], model: Path, nnunet_model: Path, cases: list[str],
            ending: str, runs: dict[str, dict], probability_runs: dict[str, dict]) -> dict[str, Any]:
    import torch

    seconds, memory, labels, probabilities, diagnostics = {}, {}, {}, {}, {}
    for mode in args.modes:
        nnunet, ours = runs[f"nnunet_{mode}"], runs[f"autosegnet_{mode}"]
        seconds[mode] = {"nnunet": nnunet["wall_s"], "autosegnet": ours["wall_s"],
                         "speedup": round(nnunet["wall_s"] / ours["wall_s"], 2)}
        memory[mode] = {tool: {k: run[k] for k in ("peak_rss_mb", "peak_tree_pss_mb")}
                        for tool, run in (("nnunet", nnunet), ("autosegnet", ours))}
        labels[mode] = compare_labels(Path(nnunet["output"]), Path(ours["output"]), cases, ending)
        if args.probabilities:
            nnunet_p, ours_p = (Path(probability_runs[f"{tool}_{mode}"]["output"]) for tool in ("nnunet", "autosegnet"))
            probabilities[mode] = compare_probabilities(nnunet_p, ours_p, cases, ending)
        if args.diagnose:
            diagnostics[mode] = diagnose(args, runs, probability_runs, mode, cases, ending)
    return {
        "benchmark": "AutoSegNet vs nnU-Net v2 prediction on the CPU, same weights, whole commands",
        "versions": {"nnunet_env": info, "autosegnet_env_torch": torch.__version__,
                     "autosegnet_env_python": sys.version.split()[0]},
        "threads": {"OMP_NUM_THREADS": args.threads, "autosegnet": args.threads,
                    "nnunet_prediction": info["prediction_threads"],
                    "nnunet_export_worker": info["default_num_processes"]},
        "model": str(model) if args.model_folder else "random weights, nnU-Net Hippocampus 3d_fullres topology",
        "nnunet_model_folder": str(nnunet_model) if args.keep else "(temporary; keep it with --keep DIR)",
        "fold": args.fold,
        "settings": {"nnunet": "nnUNetv2_predict -device cpu -npp 1 -nps 1 (its fastest on 2 cores: one "
                               "preprocessing and one export worker)",
                     "autosegnet": f"predict --device cpu --average {args.average}",
                     "timing": f"whole commands, start-up included; fastest of {max(1, args.repeats)} run(s)"},
        "autosegnet_average": args.average,
        "cases": len(cases),
        "load_average_before": args.load_before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "wall_seconds": seconds,
        "memory_mb": memory,
        "labels": labels,
        **({"probabilities": probabilities} if args.probabilities else {}),
        **({"diagnostics": diagnostics} if args.diagnose else {}),
    }


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
