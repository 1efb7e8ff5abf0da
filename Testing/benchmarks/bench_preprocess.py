"""Benchmark the plan-and-preprocess chain on the shared Hippocampus cases; prints one JSON object.

    python Testing/benchmarks/bench_preprocess.py [--cases 208] [--workers 2] [--workdir DIR]

Builds a raw dataset of symlinks in a temporary workspace, then runs, in a fresh Python process each time
(as the command line would), verify + fingerprint + plan + preprocess (``2d`` and ``3d_fullres``), twice:
once from scratch and once with nothing changed. While a run goes, the process tree's memory is sampled
every 20 ms; the child reports when each stage started and ended, so wall time and peak memory come out
per stage and for the whole chain. ``rss_mb`` sums the resident memory of the process and its workers
(shared pages counted once per process: an upper bound); ``pss_mb`` shares them fairly. ``cpu_seconds``
(user + system, workers included) is less sensitive than wall time to other work on the machine.

When ``AutoSegNetLib.planning.plan_experiment`` (or the fingerprint/verify stages) is not available, the
chain falls back to a hand-built plan equal to nnU-Net's Hippocampus reference (3d_fullres 1 mm, patch
40x56x40; 2d 1x1 mm). Reference: nnU-Net v2.8.1 takes ~56 s and 1.6 GB peak for the same chain.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "Testing" / "engine")]

DATASET = "Dataset004_Hippocampus"
CONFIGURATIONS = ["2d", "3d_fullres"]
NNUNET_SECONDS, NNUNET_PEAK_MB = 56.0, 1600.0


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished (joined) worker processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# ----- child: the chain, in one process ----------------------------------------------------------------
def run_chain(workspace_root: Path, workers: int) -> dict:
    """verify -> fingerprint -> plan -> preprocess; returns ``{stage: [start, end]}`` (Unix seconds)."""
    from AutoSegNetLib.workspace import Workspace

    ws = Workspace.at(workspace_root)
    stages: dict[str, list[float]] = {}
    notes: list[str] = []

    def stage(name: str, fn) -> object:
        start, cpu = time.time(), cpu_seconds()
        result = fn()
        stages[name] = [start, time.time(), cpu_seconds() - cpu]
        return result

    try:
        from AutoSegNetLib.dataset.verify import verify_dataset
    except ImportError:
        notes.append("verify not available: skipped")
    else:
        report = stage("verify", lambda: verify_dataset(ws.raw / DATASET, num_workers=workers))
        if getattr(report, "problems", None):
            notes.append(f"verify found problems: {report.problems[:3]}")
    try:
        from AutoSegNetLib.fingerprint import extract_fingerprint
        from AutoSegNetLib.planning import plan_experiment
    except ImportError:
        from _helpers_preprocessing import hippocampus_plans

        notes.append("fingerprint/plan not available: hand-built Hippocampus reference plan")
        stage("plan", lambda: hippocampus_plans(DATASET).save(ws.preprocessed / DATASET / "plans.json"))
    else:
        stage("fingerprint", lambda: extract_fingerprint(ws, DATASET, num_workers=workers))
        stage("plan", lambda: plan_experiment(ws, DATASET, configurations=CONFIGURATIONS))
    from AutoSegNetLib.preprocessing import preprocess_dataset

    summary = stage("preprocess", lambda: preprocess_dataset(ws, DATASET, CONFIGURATIONS, workers))
    written = {c: len(s["preprocessed"]) for c, s in summary.items() if isinstance(s, dict)}
    return {"stages": stages, "notes": notes, "preprocessed": written}


# ----- parent: build the dataset, run and measure ---------------------------------------------------------
def build_workspace(root: Path, cases: int | None) -> None:
    from _helpers_preprocessing import hippocampus_raw

    from AutoSegNetLib.workspace import Workspace

    ws = Workspace.at(root).create()
    hippocampus_raw(ws.raw, cases)
    (ws.preprocessed / DATASET).mkdir(parents=True, exist_ok=True)


def tree_memory(proc: psutil.Process) -> tuple[float, float]:
    """(sum of RSS, sum of PSS) in MB over ``proc`` and its descendants."""
    rss = pss = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rss / 2**20, pss / 2**20


def measure(root: Path, workers: int) -> dict:
    started, cpu_before = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    child = subprocess.Popen([sys.executable, __file__, "--child", str(root), "--workers", str(workers)],
                             stdout=subprocess.PIPE, cwd=REPO, text=True)
    proc = psutil.Process(child.pid)
    samples: list[tuple[float, float, float]] = []
    while child.poll() is None:
        samples.append((time.time(), *tree_memory(proc)))
        time.sleep(0.02)
    wall = time.time() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    out = child.stdout.read()
    if child.returncode != 0:
        raise SystemExit(f"chain failed (exit {child.returncode}):\n{out}")
    report = json.loads(out.strip().splitlines()[-1])

    def peak(t0: float, t1: float) -> dict:
        inside = [s for s in samples if t0 <= s[0] <= t1] or [min(samples, key=lambda s: abs(s[0] - t1))]
        return {"rss_mb": round(max(s[1] for s in inside)), "pss_mb": round(max(s[2] for s in inside))}

    stages = {name: {"seconds": round(t1 - t0, 2), "cpu_seconds": round(c, 2), **peak(t0, t1)}
              for name, (t0, t1, c) in report["stages"].items()}
    return {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), **peak(started, time.time()), "stages": stages,
            "preprocessed": report["preprocessed"], "notes": report["notes"]}


def disk_mb(folder: Path) -> float:
    seen, total = set(), 0
    for path in folder.rglob("*"):
        st = path.stat()
        if path.is_file() and st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_size
    return round(total / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=None, help="number of Hippocampus cases (default: all 208)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the workspace (default: temp)")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_chain(args.child, args.workers)))
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp) / "ws"
        build_workspace(root, args.cases)
        load_before = round(os.getloadavg()[0], 2)  # other work on the machine inflates wall times
        first = measure(root, args.workers)
        rerun = measure(root, args.workers)
        result = {
            "benchmark": "plan-and-preprocess Hippocampus (2d + 3d_fullres)",
            "cases": len(list((root / "raw" / DATASET / "labelsTr").iterdir())),
            "workers": args.workers, "cpu_count": os.cpu_count(),
            "load_average_1min_before_after": [load_before, round(os.getloadavg()[0], 2)],
            "first_run": first, "rerun_nothing_changed": rerun,
            "preprocessed_disk_mb": disk_mb(root / "preprocessed" / DATASET),
            "targets": {"chain_seconds_max": round(NNUNET_SECONDS / 3, 1), "peak_mb_max": 1024, "rerun_seconds_max": 2},
            "speedup_vs_nnunet": round(NNUNET_SECONDS / first["seconds"], 1),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
