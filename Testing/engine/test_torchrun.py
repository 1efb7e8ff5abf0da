"""The documented torchrun routes (docs/distributed.md), run for real on the CPU with gloo: two processes on one
machine, and two "machines" (two torchrun launchers with --nnodes 2 on this host) meeting at a rendezvous."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers_training import tiny_workspace

from AutoSegNetLib.training.distributed import free_port
from AutoSegNetLib.utils.atomic import read_json

REPO = Path(__file__).resolve().parents[2]
TRAIN = ["-m", "AutoSegNetLib", "train", "1", "3d_fullres", "0", "--device", "cpu", "--epochs", "1",
         "--iterations", "2", "--val-iterations", "1", "--num-workers", "0", "--progress", "none"]


def torchrun(*args: str, workspace: Path) -> subprocess.Popen:
    env = {**os.environ, "AUTOSEGNET_HOME": str(workspace), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args, *TRAIN], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished_epochs(workspace: Path) -> list[dict]:
    [progress] = workspace.glob("results/*/*/fold_0/progress.json")
    return read_json(progress)["epochs"]


@pytest.mark.slow
def test_torchrun_with_two_processes_on_one_machine_trains_the_fold(tmp_path):
    tiny_workspace(tmp_path)
    workspace = tmp_path
    process = torchrun("--standalone", "--nproc-per-node", "2", workspace=workspace)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    assert len(finished_epochs(workspace)) == 1


@pytest.mark.slow
def test_torchrun_on_two_nodes_meeting_at_a_rendezvous_endpoint_trains_the_fold(tmp_path):
    """What two machines run (here both on 127.0.0.1): the same command with --node-rank 0 and 1."""
    tiny_workspace(tmp_path)  # the shared preprocessed folder both nodes read
    workspace = tmp_path
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [torchrun("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank), "--rdzv-backend",
                      "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "autosegnet-test", workspace=workspace)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    assert len(finished_epochs(workspace)) == 1
