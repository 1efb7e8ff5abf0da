"""Benchmark ``convert msd`` + ``verify`` on the shared Hippocampus cases; prints one JSON object.

    python Testing/benchmarks/bench_convert_verify.py [--cases 208] [--workers 2] [--repeats 3] [--workdir DIR]

Each stage runs in a fresh Python process, twice over: through the command line (``python -m AutoSegNetLib
convert msd ... -np N`` / ``verify 4 -np N``, which includes the CLI's start-up) and through the library entry
points alone (``convert_msd`` / ``verify_dataset``). For every run the parent samples the resident memory of
the whole process tree every 10 ms (``peak_tree_rss_mb``: main process + workers, shared pages counted once per
process, so an upper bound) and a small wrapper reports ``getrusage(RUSAGE_CHILDREN).ru_maxrss``
(``max_process_rss_mb``: the largest single process of that run) and the CPU time of the command and its
workers (``cpu_s``, user + system: steadier than wall time on a busy machine). Times are the median of
``--repeats`` runs (``wall_s_min``: the least disturbed one); memory the maximum.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("AUTOSEGNET_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
TASK = "Task04_Hippocampus"

# Runs one command; reports the CPU seconds of it and its workers and its largest process (ru_maxrss, KiB).
WRAPPER = """
import json, resource, subprocess, sys
code = subprocess.run(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
sys.exit(code)
"""
LIBRARY_CONVERT = """
import sys
from AutoSegNetLib.dataset.convert_msd import convert_msd
from AutoSegNetLib.workspace import Workspace
convert_msd(Workspace.at(sys.argv[1]), sys.argv[2], num_workers=int(sys.argv[3]), overwrite=True)
"""
LIBRARY_VERIFY = """
import sys
from AutoSegNetLib.dataset.verify import verify_dataset
report = verify_dataset(sys.argv[1] + "/raw/Dataset004_Hippocampus", num_workers=int(sys.argv[3]))
sys.exit(0 if report.ok else 1)
"""


def measure(command: list[str]) -> dict:
    """Run ``command``; wall time, peak RSS of its process tree (sampled) and of its largest process."""
    start = time.perf_counter()
    wrapper = subprocess.Popen([sys.executable, "-c", WRAPPER, json.dumps(command)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(wrapper.pid)
        except psutil.Error:
            return
        while not done.is_set():
            total = 0
            try:
                tree = root.children(recursive=True)  # the command and its workers, not the wrapper
            except psutil.Error:
                break
            for proc in tree:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            peak = max(peak, total)
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = wrapper.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if wrapper.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({wrapper.returncode}):\n{stderr.decode()[-2000:]}")
    cpu, maxrss = stdout.split()[-2:]
    return {"wall_s": wall, "cpu_s": float(cpu), "peak_tree_rss_mb": peak / 2**20,
            "max_process_rss_mb": int(maxrss) / 1024}


def source_with(cases: int, workdir: Path) -> Path:
    """The shared MSD task, or a copy of its first ``cases`` cases."""
    source = SHARED_DATA / TASK
    if not source.is_dir():
        raise SystemExit(f"shared data not found at {source}")
    meta = json.loads((source / "dataset.json").read_text())
    if cases >= len(meta["training"]):
        return source
    target = workdir / "msd" / TASK
    for sub in ("imagesTr", "labelsTr"):
        (target / sub).mkdir(parents=True)
    meta["training"] = meta["training"][:cases]
    for entry in meta["training"]:
        for key in ("image", "label"):
            shutil.copyfile(source / entry[key], target / entry[key])
    (target / "dataset.json").write_text(json.dumps(meta))
    return target


def run_all(source: Path, workspace: Path, workers: int, repeats: int) -> dict:
    python = sys.executable
    cli = [python, "-m", "AutoSegNetLib", "--workspace", str(workspace), "--progress", "none"]
    commands = {
        "cli": {"convert": cli + ["convert", "msd", str(source), "--overwrite", "-np", str(workers)],
                "verify": cli + ["verify", "4", "-np", str(workers)]},
        "library": {"convert": [python, "-c", LIBRARY_CONVERT, str(workspace), str(source), str(workers)],
                    "verify": [python, "-c", LIBRARY_VERIFY, str(workspace), str(source), str(workers)]},
    }
    results: dict = {}
    for mode, stages in commands.items():
        results[mode] = {}
        for stage, command in stages.items():
            runs = [measure(command) for _ in range(repeats)]
            results[mode][stage] = {
                "wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
                "wall_s_min": round(min(r["wall_s"] for r in runs), 3),
                "wall_s_runs": [round(r["wall_s"], 3) for r in runs],
                "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 3),
                "peak_tree_rss_mb": round(max(r["peak_tree_rss_mb"] for r in runs), 1),
                "max_process_rss_mb": round(max(r["max_process_rss_mb"] for r in runs), 1),
            }
        results[mode]["total_wall_s"] = round(sum(results[mode][s]["wall_s"] for s in stages), 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=208)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="where to put the workspace (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        source = source_with(args.cases, Path(tmp))
        cases = len(json.loads((source / "dataset.json").read_text())["training"])
        results = run_all(source, Path(tmp) / "ws", args.workers, args.repeats)
    print(json.dumps({
        "benchmark": "convert msd + verify", "dataset": TASK, "cases": cases, "workers": args.workers,
        "repeats": args.repeats, "cpu_count": os.cpu_count(), "python": sys.version.split()[0], **results,
    }, indent=2))


if __name__ == "__main__":
    main()
