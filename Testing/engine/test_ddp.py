"""DistributedDataParallel on the CPU with gloo: 2 processes hold identical weights after training steps, equal to a
single process that sees the same global batch."""

from __future__ import annotations

import pytest
import torch
from _helpers_ddp import components, ddp_worker, global_batches
from _helpers_training import tiny_config, tiny_workspace

from AutoSegNetLib.training.distributed import DistributedSettings, free_port
from AutoSegNetLib.training.step import train_step
from AutoSegNetLib.utils.atomic import read_json


def test_two_gloo_processes_stay_identical_and_match_one_process_with_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(ddp_worker, args=(2, f"tcp://127.0.0.1:{free_port()}", str(tmp_path)), nprocs=2, join=True)
    single = components(None)
    for batch in global_batches():
        train_step(single, batch)
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    for key, value in single.model.state_dict().items():
        assert torch.equal(rank0[key], rank1[key]), key
        torch.testing.assert_close(rank0[key], value, rtol=1e-4, atol=1e-5)


def test_torchrun_environment_is_read_into_settings():
    assert DistributedSettings.from_environ({}) is None
    assert DistributedSettings.from_environ({"WORLD_SIZE": "1", "RANK": "0"}) is None
    settings = DistributedSettings.from_environ({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"})
    assert (settings.rank, settings.world_size, settings.local_rank, settings.is_main) == (2, 4, 0, False)


@pytest.mark.slow
def test_num_processes_training_equals_single_process_training(tmp_path):
    from AutoSegNetLib.progress import ProgressReporter
    from AutoSegNetLib.training import train, train_in_processes

    config = tiny_config(epochs=2, final_validation=True)
    single = train(tiny_workspace(tmp_path / "one"), "1", "3d_fullres", 0, config, ProgressReporter("none"))
    workspace = tiny_workspace(tmp_path / "two")
    train_in_processes(2, workspace, "1", "3d_fullres", 0, config, "none")
    double = workspace.results / single.parent.name / single.name
    a = read_json(single / "fold_0" / "progress.json")["epochs"]
    b = read_json(double / "fold_0" / "progress.json")["epochs"]
    for x, y in zip(a, b, strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4)
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-4)
    assert (double / "fold_0" / "validation" / "summary.json").is_file()
