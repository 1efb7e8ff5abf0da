"""How long each call the Slicer module makes on Slicer's GUI thread takes, with dozens of CT-sized cases.

    python Testing/benchmarks/bench_gui_thread.py [--cases 40] [--shape 200 256 256] [--labelmap-every 4]
                                                  [--workdir DIR] [--json]

Builds a real MRML scene (slicer-core wheel + Slicer's Python layer, as the scene tests do) with ``--cases``
synthetic CT-like cases: an int16 volume of ``--shape`` (Z Y X) with a segmentation of 3 segments (every
``--labelmap-every``-th case a uint8 labelmap with a colour table instead). Then times, call by call, what the
module runs on the GUI thread:

- ``add case``: ``TrainingSet.add_case`` for every case;
- ``refresh``: the case table's refresh (``cases()`` and every field the table shows, plus the label table);
- ``export 1``: ``StagedExport`` creation and every ``step()`` of the first export (all cases staged);
- ``export 2``: the same after one case's voxels changed (one case staged);
- ``export after reload``: the same in a "new Slicer session" (the labelmap cache emptied, a new session token):
  every labelmap's values are read again (one step each) and every case is staged again;
- ``start job`` / ``apply report``: starting the engine process, reading its report and marking the cases.

and the background half (``python -m AutoSegNetLib import-staged``, a separate process) after each export. Prints
the longest single GUI-thread call (target: < 0.2 s) and per-phase figures; ``--json`` prints them as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "AutoSegNet")]
NAMES = {1: "liver", 2: "kidney", 3: "tumour"}
TARGET_S = 0.2


def activate_slicer():
    """Slicer's Python layer over slicer-core's MRML, as the scene tests use it."""
    import slicer

    from Testing.scene import slicer_layer

    slicer_layer.activate()
    return slicer


class Timer:
    """Wall time of each call, by phase."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[str, float]]] = {}

    def __call__(self, phase: str, what: str, function, *args):
        start = time.perf_counter()
        result = function(*args)
        self.calls.setdefault(phase, []).append((what, time.perf_counter() - start))
        return result

    def summary(self) -> dict:
        phases = {}
        for phase, calls in self.calls.items():
            seconds = [s for _, s in calls]
            slowest = max(calls, key=lambda c: c[1])
            phases[phase] = {"calls": len(calls), "max_s": round(slowest[1], 4), "slowest": slowest[0],
                             "median_s": round(statistics.median(seconds), 4), "total_s": round(sum(seconds), 3)}
        worst = max(((phase, what, s) for phase, calls in self.calls.items() for what, s in calls), key=lambda c: c[2])
        return {"longest_gui_call_s": round(worst[2], 4), "longest_gui_call": f"{worst[0]}: {worst[1]}",
                "target_s": TARGET_S, "within_target": worst[2] < TARGET_S, "phases": phases}


def build_scene(slicer, count: int, shape: tuple[int, int, int], labelmap_every: int):
    """``[(volume, label node)]`` of synthetic CT-like cases (not timed: loading data is not the module's work)."""
    from AutoSegNetSceneLib import volumes
    from AutoSegNetSceneLib.import_prediction import import_segmentation

    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 30, shape).astype(np.int16)
    colours = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "organ colours")
    colours.SetTypeToUser()
    colours.SetNumberOfColors(len(NAMES) + 1)
    for value, name in NAMES.items():
        colours.SetColor(value, name, 0.2 * value, 0.5, 0.5, 1.0)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    placement = np.diag([0.8, 0.8, 1.5, 1.0])
    placement[:3, 3] = (-100.0, -120.0, -150.0)
    cases = []
    for index in range(count):
        centre = np.array(shape) / 2 + rng.uniform(-10, 10, 3)
        radius = min(shape) / 4
        labels = np.zeros(shape, np.uint8)
        labels[(z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius ** 2] = 1
        labels[10:50, 20:80, 30:90] = 2
        labels[(z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2] - 10) ** 2 <= (radius / 4) ** 2] = 3
        image = np.roll(noise, index * 7, axis=2) + np.array([-1000, 60, 40, 120], np.int16)[labels]
        volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"CT {index + 1}")
        slicer.util.updateVolumeFromArray(volume, image)
        volume.SetIJKToRASMatrix(volumes.vtk_matrix(placement))
        if labelmap_every and index % labelmap_every == labelmap_every - 1:
            label_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"CT {index + 1} labels")
            slicer.util.updateVolumeFromArray(label_node, labels)
            volumes.copy_placement(volume, label_node)
            label_node.CreateDefaultDisplayNodes()
            label_node.GetDisplayNode().SetAndObserveColorNodeID(colours.GetID())
        else:
            label_node = import_segmentation(scene, labels, NAMES, volume, f"CT {index + 1} segmentation")
        cases.append((volume, label_node))
    return scene, cases


def refresh(training_set) -> int:
    """What the module's ``refreshCases`` reads."""
    rows = [[case.name, case.volume.GetName(), case.label_node.GetName(), ", ".join(case.segment_names), case.status]
            for case in training_set.cases()]
    labels = training_set.labels
    return len(rows) + len(labels.names())


def export_phase(timer: Timer, phase: str, training_set, dataset, workdir: Path) -> dict:
    """Stage step by step (timed), then run the engine command as the background job would; returns figures."""
    from AutoSegNetSceneLib import commands
    from AutoSegNetSceneLib.export import apply_export_report, load_export_report
    from AutoSegNetSceneLib.staging import StagedExport

    export = timer(phase, "StagedExport()", StagedExport, training_set, dataset)
    more = True
    while more:
        more = timer(phase, "step", export.step)
        timer.calls[phase][-1] = (f"step: {export.message}", timer.calls[phase][-1][1])  # what the step did
    result = export.result
    report_path = workdir / f"report-{phase.replace(' ', '-')}.json"
    args = commands.import_staged(dataset, result.staging_folder, report_path)
    start = time.perf_counter()
    process = timer("start job", f"{phase}: start import-staged", lambda: subprocess.Popen(
        [sys.executable, "-m", "AutoSegNetLib", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True))
    _, errors = process.communicate()
    background_s = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"import-staged failed:\n{errors}")
    report = timer("apply report", f"{phase}: load + apply report",
                   lambda: (r := load_export_report(report_path), apply_export_report(training_set, r))[0])
    return {"staged": len(result.staged), "unchanged_skipped": len(result.unchanged), "written": len(report.written),
            "unchanged": len(report.unchanged), "background_s": round(background_s, 2)}


def workflow_phase(timer: Timer, scene, dataset) -> dict:
    """Export as the module's panel does it: ``Workflow.start_export``, then ``poll`` from the timer until the
    chain (stage in process, ``import-staged``, ``verify``) has ended; every poll is a GUI-thread call."""
    from AutoSegNetSceneLib.workflow import Workflow

    workflow = Workflow(scene)
    start = time.perf_counter()
    chain = timer("workflow export", "start_export", workflow.start_export, dataset)
    while chain.running:
        timer("workflow export", "poll (staging)" if chain.in_process else "poll", workflow.poll)
        time.sleep(0.02)
    if chain.state.status != "finished":
        raise SystemExit(f"the export chain {chain.state.status}: {chain.state.message}")
    return {"staged": "-", "written": len(workflow.last_export.written),
            "unchanged": len(workflow.last_export.unchanged), "background_s": round(time.perf_counter() - start, 2),
            "note": "whole chain: staging polls + import-staged + verify"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--shape", type=int, nargs=3, default=(200, 256, 256), metavar=("Z", "Y", "X"))
    parser.add_argument("--labelmap-every", type=int, default=4, help="every N-th case uses a labelmap (0: none)")
    parser.add_argument("--workdir", type=Path, help="workspace folder (default: a temporary one, deleted)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    slicer = activate_slicer()
    from AutoSegNetSceneLib import cases as cases_module
    from AutoSegNetSceneLib import staging
    from AutoSegNetSceneLib.cases import TrainingSet
    from AutoSegNetSceneLib.settings import DatasetSettings

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-gui-thread-"))
    try:
        build_start = time.perf_counter()
        scene, nodes = build_scene(slicer, args.cases, tuple(args.shape), args.labelmap_every)
        build_s = time.perf_counter() - build_start
        training_set = TrainingSet(scene)
        dataset = DatasetSettings(workdir, 501, "Bench", ("CT",))
        timer = Timer()
        for index, (volume, label_node) in enumerate(nodes):
            timer("add case", f"case {index + 1} ({label_node.GetClassName()})", training_set.add_case, [volume],
                  label_node)
            timer("refresh", f"after adding case {index + 1}", refresh, training_set)
        background = {"export 1": export_phase(timer, "export 1", training_set, dataset, workdir)}
        for repeat in range(3):
            timer("refresh", f"after export 1 (#{repeat + 1})", refresh, training_set)
        changed = nodes[len(nodes) // 2][0]
        slicer.util.arrayFromVolume(changed)[5:20, 40:60, 40:60] += 100  # the user edits one case
        slicer.util.arrayFromVolumeModified(changed)
        background["export 2"] = export_phase(timer, "export 2", training_set, dataset, workdir)
        cases_module._LABELMAP_CACHE.clear()  # what a restarted Slicer starts with (the scene is reloaded)
        staging.SESSION = "a new Slicer session"
        timer("refresh", "after reload", refresh, training_set)
        background["export after reload"] = export_phase(timer, "export after reload", training_set, dataset, workdir)
        slicer.util.arrayFromVolume(nodes[0][0])[5:20, 40:60, 40:60] += 100  # another edit, then the module's path
        slicer.util.arrayFromVolumeModified(nodes[0][0])
        background["workflow export"] = workflow_phase(timer, scene, dataset)
        figures = {"cases": args.cases, "shape_zyx": list(args.shape), "labelmap_every": args.labelmap_every,
                   "scene_build_s": round(build_s, 1), **timer.summary(), "background": background}
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures, indent=2) if args.json else text(figures))


def text(figures: dict) -> str:
    lines = [f"{figures['cases']} cases of {'x'.join(map(str, figures['shape_zyx']))} (Z Y X), every "
             f"{figures['labelmap_every']}-th a labelmap; scene built in {figures['scene_build_s']} s (not timed).",
             f"Longest GUI-thread call: {figures['longest_gui_call_s'] * 1000:.0f} ms ({figures['longest_gui_call']}); "
             f"target < {figures['target_s'] * 1000:.0f} ms: {'met' if figures['within_target'] else 'NOT met'}.",
             "", f"{'GUI-thread phase':<22}{'calls':>6}{'max ms':>9}{'median ms':>11}{'total s':>9}  slowest call"]
    for phase, row in figures["phases"].items():
        lines.append(f"{phase:<22}{row['calls']:>6}{row['max_s'] * 1000:>9.1f}{row['median_s'] * 1000:>11.1f}"
                     f"{row['total_s']:>9.2f}  {row['slowest']}")
    lines += ["", f"{'background import-staged':<26}{'staged':>7}{'written':>8}{'unchanged':>10}{'wall s':>8}"]
    for phase, row in figures["background"].items():
        lines.append(f"{phase:<26}{row['staged']:>7}{row['written']:>8}{row['unchanged']:>10}{row['background_s']:>8}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
