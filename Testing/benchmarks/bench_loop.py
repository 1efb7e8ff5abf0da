"""The annotate-correct-retrain loop, played by a simulated user on real MSD Hippocampus cases.

Everything a Slicer user does goes through the module's own scene glue (real MRML from slicer-core, Slicer's
Python layer, the :class:`~AutoSegNetSceneLib.workflow.Workflow` the panel drives, followed by ``poll`` as the
panel's timer does) and the engine runs as background processes, as in Slicer:

- round 0: ``--initial`` cases become training cases; **Train** from scratch (fold ``all``);
- rounds 1..``--rounds``: ``--per-round`` new volumes are segmented with the latest version (imported into
  segmentation nodes exactly as in Slicer); a simulated annotator corrects each segment to the reference through
  the segmentation node (the same import of a binary labelmap into a segment that ``slicer.util.
  updateSegmentBinaryLabelmapFromArray`` does); the voxels it had to change are the correction effort; the cases
  are added as corrected cases and **Retrain** fine-tunes the latest version;
- every version is evaluated on ``--held-out`` cases no round uses (Dice per label, HD95, no TTA);
- control: per round, a model trained from scratch on the same cases for as many iterations as the loop's model
  has seen in total by then (round 0's plus every retrain's), in its own workspace.

Each round's wall time is split into export (staging + import-staged), preprocess, train and predict. Prints a
text table or ``--json``; ``--plot PNG`` draws Dice against cumulative minutes (loop vs scratch) and the
correction effort per round. CPU-sized defaults: ``--batch-size 2`` and short schedules (state them with figures).

    python Testing/benchmarks/bench_loop.py --json --plot loop.png
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "AutoSegNet")]
HIPPOCAMPUS = REPO.parent / "shared" / "data" / "Task04_Hippocampus"
LABELS = {1: "Anterior", 2: "Posterior"}


@dataclass
class Schedule:
    """Iterations of each training: ``epochs`` x ``iterations``, with the benchmark's batch size."""

    initial_epochs: int
    retrain_epochs: int
    iterations: int
    batch_size: int

    def extra_args(self) -> tuple[str, ...]:
        return ("--batch-size", str(self.batch_size), "--val-iterations", "2", "--num-workers", "1")


@dataclass
class Round:
    index: int
    cases: int
    iterations_seen: int
    seconds: dict[str, float] = field(default_factory=dict)
    correction_voxels: int | None = None
    correction_fraction: float | None = None
    dice: dict[str, float] = field(default_factory=dict)
    hd95: dict[str, float] = field(default_factory=dict)
    scratch: dict = field(default_factory=dict)


# ----- the scene ----------------------------------------------------------------------------------------------
def load_case(scene, name: str):
    """Volume node + reference label array ``(Z, Y, X)`` of one Hippocampus case (files read by the engine)."""
    from AutoSegNetSceneLib import volumes

    from AutoSegNetLib.imageio import io_for

    image_path, label_path = HIPPOCAMPUS / "imagesTr" / f"{name}.nii.gz", HIPPOCAMPUS / "labelsTr" / f"{name}.nii.gz"
    images, geometry = io_for(image_path).read_images([image_path])
    labels, _ = io_for(label_path).read_seg(label_path)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    volumes.set_volume_array(volume, np.ascontiguousarray(images[0]), geometry)
    return volume, np.asarray(labels[0] if labels.ndim == 4 else labels).astype(np.uint8)


def reference_segmentation(scene, volume, labels: np.ndarray):
    from AutoSegNetSceneLib.import_prediction import import_segmentation

    return import_segmentation(scene, labels, LABELS, volume, f"{volume.GetName()} segmentation")


def labelmap_of(scene, segmentation, volume) -> np.ndarray:
    """The segmentation as a label map on ``volume``'s grid (values by segment name), via Slicer's export."""
    import slicer
    import vtk

    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    out = np.zeros(slicer.util.arrayFromVolume(volume).shape, np.uint8)
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__bench__")
    try:
        for value, name in LABELS.items():
            segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
            if not segment_id:
                continue
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segment_id)
            logic.ExportSegmentsToLabelmapNode(segmentation, ids, node, volume)
            out[slicer.util.arrayFromVolume(node) > 0] = value
    finally:
        scene.RemoveNode(node)
    return out


def correct(scene, segmentation, volume, reference: np.ndarray) -> int:
    """Make each segment equal to the reference, as an annotator's edits would; returns voxels changed."""
    import slicer
    import vtk

    predicted = labelmap_of(scene, segmentation, volume)
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    for value, name in LABELS.items():
        segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
        if not segment_id:
            segment_id = segmentation.GetSegmentation().AddEmptySegment(name, name)
        node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__edit__")
        try:
            node.CopyOrientation(volume)
            slicer.util.updateVolumeFromArray(node, (reference == value).astype(np.uint8))
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segment_id)
            if not logic.ImportLabelmapToSegmentationNode(node, segmentation, ids):
                raise RuntimeError(f"could not update segment {name}")
        finally:
            scene.RemoveNode(node)
    return int(np.count_nonzero(predicted != reference))


# ----- jobs through the workflow --------------------------------------------------------------------------------
def follow(workflow, job, times: dict[str, float]) -> None:
    """Poll like the panel's timer until ``job`` ends; adds each chain step's wall time to ``times``."""
    step, started = None, time.perf_counter()
    while job.running:
        workflow.poll()
        current = job.steps[job.index].name if hasattr(job, "steps") and job.index >= 0 else "predict"
        if current != step:
            now = time.perf_counter()
            if step is not None:
                times[_phase(step)] = times.get(_phase(step), 0.0) + now - started
            step, started = current, now
        time.sleep(0.02)
    times[_phase(step)] = times.get(_phase(step), 0.0) + time.perf_counter() - started
    if job.state.status != "finished":
        raise SystemExit(f"{step} {job.state.status}: {job.state.message}\n{job.log_tail(20)}")


def _phase(step: str | None) -> str:
    return {"stage": "export", "export": "export", "preprocess": "preprocess", "train": "train"}.get(step, "predict")


def latest_version(workflow, root: Path):
    return [m for m in workflow.models(root) if m.version][-1]


def evaluate(model, names: list[str], workdir: Path) -> tuple[dict, dict]:
    """Predict the held-out files with the engine (no TTA) and evaluate them: Dice and HD95 per label name."""
    import subprocess

    from AutoSegNetLib.dataset import DatasetJson
    from AutoSegNetLib.evaluation.evaluate import evaluate_folders, labels_for

    inputs, refs, out = workdir / "in", workdir / "ref", workdir / "out"
    for folder in (inputs, refs):
        folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        for source, target in ((HIPPOCAMPUS / "imagesTr" / f"{name}.nii.gz", inputs / f"{name}_0000.nii.gz"),
                               (HIPPOCAMPUS / "labelsTr" / f"{name}.nii.gz", refs / f"{name}.nii.gz")):
            if not target.exists():
                target.symlink_to(source)
    subprocess.run([sys.executable, "-m", "AutoSegNetLib", "--progress", "none", "predict", "-i", str(inputs), "-o",
                    str(out), "--model-folder", str(model.folder), "-f", *model.folds, "--no-tta", "--device", "cpu"],
                   check=True, cwd=REPO, capture_output=True)
    labels = labels_for(DatasetJson.load(model.folder / "dataset.json"), None, regions=False)
    summary = evaluate_folders(refs, out, labels)
    names_by_key = summary.get("labels", {})
    dice = {names_by_key.get(k, k): round(v["Dice"], 4) for k, v in summary["mean"].items()}
    hd95 = {names_by_key.get(k, k): round(v.get("HD95") or float("nan"), 2) for k, v in summary["mean"].items()}
    return dice, hd95


# ----- the loop ---------------------------------------------------------------------------------------------------
def run(args) -> dict:
    import slicer
    from AutoSegNetSceneLib.settings import DatasetSettings, TrainingSettings
    from AutoSegNetSceneLib.workflow import Workflow

    from Testing.scene import slicer_layer

    slicer_layer.activate()
    names = sorted(p.name[:-7] for p in (HIPPOCAMPUS / "labelsTr").glob("hippocampus_*.nii.gz"))
    rng = np.random.default_rng(args.seed)
    names = list(rng.permutation(names))
    held_out = names[:args.held_out]
    pool = names[args.held_out:]
    schedule = Schedule(args.initial_epochs, args.retrain_epochs, args.iterations, args.batch_size)
    root = Path(args.workdir)
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    workflow = Workflow(scene)
    dataset = DatasetSettings(root / "loop", 501, "Loop", ("MRI",))

    def settings(epochs: int) -> TrainingSettings:
        return TrainingSettings(configuration="3d_fullres", fold="all", epochs=epochs,
                                iterations_per_epoch=schedule.iterations, device="cpu",
                                extra_args=schedule.extra_args())

    rounds, used = [], 0
    for name in pool[:args.initial]:
        volume, labels = load_case(scene, name)
        workflow.training_set().add_case([volume], reference_segmentation(scene, volume, labels))
    used = args.initial
    record = Round(0, used, schedule.initial_epochs * schedule.iterations)
    follow(workflow, workflow.start_training(dataset, settings(schedule.initial_epochs)), record.seconds)
    record.dice, record.hd95 = evaluate(latest_version(workflow, dataset.workspace_root), held_out, root / "eval0")
    rounds.append(record)
    log(record)
    for index in range(1, args.rounds + 1):
        model = latest_version(workflow, dataset.workspace_root)
        record = Round(index, used + args.per_round,
                       rounds[-1].iterations_seen + schedule.retrain_epochs * schedule.iterations)
        changed = total = 0
        for name in pool[used:used + args.per_round]:
            volume, labels = load_case(scene, name)
            job = workflow.start_segmentation(dataset.workspace_root, [volume], model, fast_preview=True,
                                              device="cpu")
            follow(workflow, job, record.seconds)
            result = workflow.take_new_segmentation()
            changed += correct(scene, result, volume, labels)
            total += labels.size
            workflow.training_set().add_case([volume], result, corrected=True)
        used += args.per_round
        record.correction_voxels, record.correction_fraction = changed, round(changed / total, 5)
        follow(workflow, workflow.start_retraining(dataset, settings(schedule.retrain_epochs), model), record.seconds)
        record.dice, record.hd95 = evaluate(latest_version(workflow, dataset.workspace_root), held_out,
                                            root / f"eval{index}")
        record.scratch = scratch_control(scene, root, index, record.iterations_seen, schedule, held_out, settings)
        rounds.append(record)
        log(record)
    return {"settings": {"initial": args.initial, "per_round": args.per_round, "rounds": args.rounds,
                         "held_out": args.held_out, "schedule": schedule.__dict__, "device": "cpu",
                         "threads": _threads()},
            "rounds": [r.__dict__ for r in rounds]}


def scratch_control(scene, root: Path, index: int, iterations: int, schedule: Schedule, held_out, settings) -> dict:
    """From scratch on the same cases, as many iterations as the loop's model has seen; its own workspace."""
    from AutoSegNetSceneLib.settings import DatasetSettings
    from AutoSegNetSceneLib.workflow import Workflow

    workflow = Workflow(scene)
    dataset = DatasetSettings(root / f"scratch{index}", 502, "Scratch", ("MRI",))
    times: dict[str, float] = {}
    epochs = max(1, round(iterations / schedule.iterations))
    follow(workflow, workflow.start_training(dataset, settings(epochs)), times)
    dice, hd95 = evaluate(latest_version(workflow, dataset.workspace_root), held_out, root / f"eval_scratch{index}")
    return {"iterations": epochs * schedule.iterations, "seconds": {k: round(v, 1) for k, v in times.items()},
            "dice": dice, "hd95": hd95}


def log(record: Round) -> None:
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in record.seconds.items())
    scratch = f"; scratch Dice {record.scratch.get('dice')}" if record.scratch else ""
    print(f"round {record.index}: {record.cases} cases, Dice {record.dice}, HD95 {record.hd95}, "
          f"correction {record.correction_fraction}, {seconds}{scratch}", file=sys.stderr, flush=True)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = figures["rounds"]
    minutes, total = [], 0.0
    for record in rounds:
        total += sum(record["seconds"].values()) / 60
        minutes.append(total)
    mean = [float(np.mean(list(r["dice"].values()))) for r in rounds]
    scratch = [(sum(r["scratch"]["seconds"].values()) / 60, float(np.mean(list(r["scratch"]["dice"].values()))))
               for r in rounds if r["scratch"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(minutes, mean, "o-", label="loop (fine-tune each round)")
    if scratch:
        left.plot(*zip(*scratch), "s--", label="from scratch, same iterations")
    left.set_xlabel("cumulative minutes (loop) / minutes of one training (scratch)")
    left.set_ylabel("mean Dice on held-out cases")
    left.legend()
    effort = [(r["index"], r["correction_fraction"] * 100) for r in rounds if r["correction_fraction"] is not None]
    if effort:
        right.bar(*zip(*effort))
    right.set_xlabel("round")
    right.set_ylabel("voxels the annotator changed (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--initial", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--held-out", type=int, default=40)
    parser.add_argument("--initial-epochs", type=int, default=6)
    parser.add_argument("--retrain-epochs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=25, help="iterations per epoch")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    if not (HIPPOCAMPUS / "labelsTr").is_dir():
        raise SystemExit(f"MSD Hippocampus not found at {HIPPOCAMPUS} (expected ../shared/data beside the repository)")
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as scratch:
        args.workdir = args.workdir or Path(scratch)
        figures = run(args)
    if args.plot:
        plot(figures, args.plot)
    print(json.dumps(figures, indent=2) if args.json else text(figures))


def text(figures: dict) -> str:
    lines = [f"settings: {json.dumps(figures['settings'])}",
             f"{'round':>5} {'cases':>5} {'iters':>6} {'Dice (held-out)':<34} {'corrected %':>11} {'minutes':>8}"
             f"  scratch Dice (same iterations), minutes"]
    for r in figures["rounds"]:
        minutes = sum(r["seconds"].values()) / 60
        scratch = (f"  {r['scratch']['dice']}, {sum(r['scratch']['seconds'].values()) / 60:.1f}"
                   if r["scratch"] else "")
        effort = f"{r['correction_fraction'] * 100:.2f}" if r["correction_fraction"] is not None else "-"
        lines.append(f"{r['index']:>5} {r['cases']:>5} {r['iterations_seen']:>6} {json.dumps(r['dice']):<34} "
                     f"{effort:>11} {minutes:>8.1f}{scratch}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
