"""What a remote engine costs: uploading a training set to ``autosegnet serve``, and a remote prediction.

    python Testing/benchmarks/bench_remote.py [--cases 40] [--shape 200 256 256] [--predict-shape 96 160 160]
                                              [--workdir DIR] [--json]

Starts a real server on this machine (loopback: the figures are the software's cost, not a network's) and
1. uploads ``--cases`` CT-like int16 cases of ``--shape`` (Z Y X) with a 3-label segmentation, as the module's
   export leaves them (``.nii.gz`` with content hashes in dataset.json): time, bytes sent against the voxels'
   raw size; then again with nothing changed, and with one case changed (incremental);
2. trains a tiny model on the server, then predicts one image of ``--predict-shape`` twice: locally
   (``python -m AutoSegNetLib predict`` on the same model folder) and through the server (upload, queue, job,
   events, download), ``--repeats`` times each, alternated. Overhead = median remote - median local - median
   transfer time (target: < 10 % of the local time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from AutoSegNetLib.dataset.dataset_json import DatasetJson  # noqa: E402
from AutoSegNetLib.imageio import Geometry, io_for  # noqa: E402
from AutoSegNetLib.remote.dataset_sync import sync_dataset  # noqa: E402
from AutoSegNetLib.remote.remote_job import RemoteJob  # noqa: E402
from Testing.engine._helpers_server import Server, synthetic_raw_dataset  # noqa: E402

DATASET = "Dataset950_RemoteBench"
TINY = ["--iterations", "2", "--val-iterations", "1", "--batch-size", "2", "--num-workers", "0", "--device", "cpu"]


def ct_like(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An int16 body with noise and three blobs, and their labels (1, 2, 3)."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    centre = np.array(shape) / 2
    body = ((y - centre[1]) / (shape[1] * 0.42)) ** 2 + ((x - centre[2]) / (shape[2] * 0.38)) ** 2 <= 1
    image = np.where(body, 40, -1000).astype(np.int16) + rng.normal(0, 25, shape).astype(np.int16)
    labels = np.zeros(shape, np.uint8)
    for value in (1, 2, 3):
        c = rng.uniform(0.3, 0.7, 3) * np.array(shape)
        r = rng.uniform(0.06, 0.12) * min(shape[1:])
        blob = ((z - c[0]) / (r * 0.6)) ** 2 + ((y - c[1]) / r) ** 2 + ((x - c[2]) / r) ** 2 <= 1
        labels[blob] = value
        image[blob] += np.int16(60 * value)
    return image, labels


def write_cases(folder: Path, count: int, shape: tuple[int, int, int], seed: int = 0) -> int:
    """A raw dataset with content hashes in dataset.json; returns the voxels' raw size in bytes."""
    import hashlib

    io, rng, hashes, raw = io_for(".nii.gz"), np.random.default_rng(seed), {}, 0
    geometry = Geometry(spacing=(1.5, 0.8, 0.8))
    for index in range(count):
        image, labels = ct_like(rng, shape)
        name = f"case_{index:04d}"
        io.write_image(image, folder / "imagesTr" / f"{name}_0000.nii.gz", geometry)
        io.write_seg(labels, folder / "labelsTr" / f"{name}.nii.gz", geometry)
        hashes[name] = hashlib.sha256(image.tobytes() + labels.tobytes()).hexdigest()
        raw += image.nbytes + labels.nbytes
    DatasetJson(channel_names={"0": "CT"}, labels={"background": 0, "a": 1, "b": 2, "c": 3}, num_training=count,
                file_ending=".nii.gz").save(folder / "dataset.json")
    data = json.loads((folder / "dataset.json").read_text())
    data["autosegnet"] = {"case_hashes": hashes}
    (folder / "dataset.json").write_text(json.dumps(data))
    return raw


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_upload(server: Server, local: Path, cases: int, shape) -> dict:
    folder = local / "raw" / DATASET
    raw_bytes, write_s = timed(write_cases, folder, cases, shape)
    connection = server.connection()
    first, first_s = timed(sync_dataset, connection, folder)
    again, again_s = timed(sync_dataset, connection, folder)
    data = json.loads((folder / "dataset.json").read_text())
    data["autosegnet"]["case_hashes"]["case_0000"] = "changed"
    (folder / "dataset.json").write_text(json.dumps(data))
    one, one_s = timed(sync_dataset, connection, folder)
    return {"cases": cases, "shape_zyx": list(shape), "raw_voxel_bytes": raw_bytes,
            "file_bytes": first.bytes_of_files, "bytes_sent": first.bytes_sent,
            "sent_vs_raw": round(first.bytes_sent / raw_bytes, 3), "writing_cases_s": round(write_s, 1),
            "first_upload_s": round(first_s, 2), "first_upload_mb_per_s": round(first.bytes_sent / 2**20 / first_s, 1),
            "unchanged_upload_s": round(again_s, 3), "unchanged_sent": len(again.uploaded),
            "one_changed_upload_s": round(one_s, 3), "one_changed_sent": len(one.uploaded)}


def run_job(connection, local: Path, command: str, *args: str) -> float:
    start = time.perf_counter()
    job = RemoteJob.submit(connection, command, list(args), local / "jobs" / f"{command}-{time.monotonic_ns()}")
    job.wait(3600, interval=0.02)
    if job.state.status != "finished":
        raise RuntimeError(f"{command}: {job.state.status} {job.state.message} {job.log_tail()}")
    return time.perf_counter() - start


def bench_predict(server: Server, local: Path, shape, repeats: int) -> dict:
    connection = server.connection()
    sync_dataset(connection, synthetic_raw_dataset(local / "tiny", 4))
    tiny = "Dataset900_SyntheticEllipsoids"
    run_job(connection, local, "plan-and-preprocess", tiny, "-c", "3d_fullres", "-np", "1")
    run_job(connection, local, "train", tiny, "3d_fullres", "all", "--epochs", "1", *TINY)
    model = f"results/{tiny}/AutoSegNet__nnUNetPlans__3d_fullres"
    image, _ = ct_like(np.random.default_rng(5), shape)
    inputs = local / "predict-input"
    io_for(".nii.gz").write_image(image.astype(np.float32), inputs / "img_0000.nii.gz",
                                  Geometry(spacing=(1.5, 1.0, 1.0)))
    server_root = server.workspace / "clients" / "alice"
    common = ["-f", "all", "--no-tta", "--device", "cpu"]
    local_runs, remote_runs, transfers = [], [], []
    for repeat in range(repeats):  # alternated, so that a noisy moment of the machine hits both alike
        _, local_s = timed(subprocess.run, [sys.executable, "-m", "AutoSegNetLib", "predict", "-i", str(inputs),
                                            "-o", str(local / f"local-out-{repeat}"), "--model-folder",
                                            str(server_root / model), *common, "--progress", "none"],
                           check=True, cwd=str(REPO), capture_output=True)
        start = time.perf_counter()
        _, upload_s = timed(connection.upload, "PUT", f"/v1/files/jobs/bench{repeat}/input/img_0000.nii.gz",
                            inputs / "img_0000.nii.gz")
        run_job(connection, local, "predict", "-i", f"jobs/bench{repeat}/input", "-o", f"jobs/bench{repeat}/output",
                "--model-folder", model, *common)
        _, download_s = timed(connection.download, f"jobs/bench{repeat}/output/img.nii.gz",
                              local / f"remote-out-{repeat}/img.nii.gz")
        remote_runs.append(time.perf_counter() - start)
        local_runs.append(local_s)
        transfers.append(upload_s + download_s)
    local_s, remote_s, transfer_s = (statistics.median(v) for v in (local_runs, remote_runs, transfers))
    return {"shape_zyx": list(shape), "repeats": repeats, "local_command_s": [round(v, 2) for v in local_runs],
            "remote_total_s": [round(v, 2) for v in remote_runs], "median_local_s": round(local_s, 2),
            "median_remote_s": round(remote_s, 2), "median_transfer_s": round(transfer_s, 3),
            "overhead_s": round(remote_s - local_s - transfer_s, 2),
            "overhead_fraction": round((remote_s - local_s - transfer_s) / local_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--shape", type=int, nargs=3, default=(200, 256, 256))
    parser.add_argument("--predict-shape", type=int, nargs=3, default=(96, 160, 160))
    parser.add_argument("--repeats", type=int, default=3, help="predictions of each kind, alternated (medians)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as temporary:
        root = Path(temporary)
        server = Server(root / "server")
        try:
            result = {"upload": bench_upload(server, root / "client", args.cases, tuple(args.shape)),
                      "predict": bench_predict(server, root / "client", tuple(args.predict_shape), args.repeats),
                      "machine": {"cpus": __import__("os").cpu_count()}}
        finally:
            server.stop()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for section, figures in result.items():
        print(f"{section}:")
        for key, value in figures.items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
