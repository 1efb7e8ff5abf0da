"""``autosegnet demo``: the whole pipeline on the synthetic dataset, end to end, in a few minutes on a CPU.

synthetic dataset -> verify -> fingerprint -> plan -> preprocess -> train (fold 0, short schedule)
-> predict held-out test cases -> evaluate. Every stage is the real one, called through its entry function;
verify, fingerprint and plan through :func:`~AutoSegNetLib.planning.plan_dataset.plan_dataset`, as
``plan-and-preprocess`` runs them (timed together as ``plan``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from AutoSegNetLib.demo.synthetic import DEMO_ID, DEMO_NAME, make_case, write_synthetic_dataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, io_for
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)
CONFIGURATION = "3d_fullres"


@dataclass
class DemoSettings:
    """Size of the demo run. The defaults finish in a few minutes on 2 CPU cores."""

    num_cases: int = 12
    num_test_cases: int = 3
    epochs: int = 4
    iterations_per_epoch: int = 20
    num_workers: int = 2
    device: str = "auto"
    seed: int = 0


def run_demo(workspace: Workspace, settings: DemoSettings, reporter: ProgressReporter) -> dict[str, Any]:
    """Run every stage on ``Dataset900_SyntheticEllipsoids``; returns timings (s) and test-set Dice per label."""
    workspace.create()
    timings: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        reporter.emit("stage", stage=name)
        start = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - start, 2)
        log.info("demo: %s done in %.1f s", name, timings[name])
        return result

    folder = stage("dataset", lambda: write_synthetic_dataset(workspace, settings.num_cases, settings.seed))
    dataset = folder.name
    stage("plan", lambda: _plan(workspace, dataset, settings.num_workers, reporter))
    stage("preprocess", lambda: _preprocess(workspace, dataset, settings.num_workers, reporter))
    model_folder = stage("train", lambda: _train(workspace, dataset, settings, reporter))
    test_folder = workspace.results / dataset / "demo_test"
    stage("predict", lambda: _predict(model_folder, test_folder, settings, reporter))
    summary = stage("evaluate", lambda: _evaluate(folder, test_folder))
    names = summary.get("labels", {})  # label key -> name: the Dice is reported by label name
    dice = {names.get(key, key): round(values["Dice"], 4) for key, values in summary["mean"].items()}
    result = {"dataset": dataset, "model_folder": str(model_folder), "timings_s": timings, "test_dice": dice}
    reporter.emit("done", **result)
    return result


def _plan(workspace: Workspace, dataset: str, num_workers: int, reporter: ProgressReporter) -> None:
    """Verify, fingerprint and plan (always anew: the demo shows every stage run)."""
    from AutoSegNetLib.planning.plan_dataset import PlanSettings, plan_dataset

    settings = PlanSettings(verify=True, configurations=(CONFIGURATION,), num_workers=num_workers, reuse=False)
    planned = plan_dataset(workspace, dataset, settings, reporter)
    if planned.plans is None:
        raise AutoSegNetError(f"The demo dataset failed verification: {planned.verification.errors[0].message}")


def _preprocess(workspace: Workspace, dataset: str, num_workers: int, reporter: ProgressReporter) -> None:
    from AutoSegNetLib.preprocessing import preprocess_dataset

    preprocess_dataset(workspace, dataset, [CONFIGURATION], num_workers, reporter)


def _train(workspace: Workspace, dataset: str, settings: DemoSettings, reporter: ProgressReporter) -> Path:
    from AutoSegNetLib.training import TrainingConfig, train

    config = TrainingConfig(
        epochs=settings.epochs, iterations_per_epoch=settings.iterations_per_epoch, val_iterations=5,
        num_workers=0, device=settings.device, seed=settings.seed, save_every=max(1, settings.epochs // 2),
    )
    return train(workspace, dataset, CONFIGURATION, 0, config, reporter)


def _predict(model_folder: Path, test_folder: Path, settings: DemoSettings, reporter: ProgressReporter) -> None:
    """Make held-out test cases (a different seed from training), then predict them with fold 0."""
    from AutoSegNetLib.inference import Predictor
    from AutoSegNetLib.inference.files import predict_files

    rng = np.random.default_rng(settings.seed + 1000)
    io = io_for(".nii.gz")
    geometry = Geometry(spacing=(1.5, 1.0, 1.0), origin=(-20.0, -20.0, -18.0))
    for i in range(settings.num_test_cases):
        image, seg = make_case(rng)
        io.write_image(image, test_folder / "images" / f"test_{i:03d}_0000.nii.gz", geometry)
        io.write_seg(seg, test_folder / "labels" / f"test_{i:03d}.nii.gz", geometry)
    predictor = Predictor.from_model_folder(model_folder, folds=(0,), device=settings.device)
    predict_files(predictor, test_folder / "images", test_folder / "predictions", reporter=reporter)


def _evaluate(raw_folder: Path, test_folder: Path) -> dict[str, Any]:
    from AutoSegNetLib.dataset import DatasetJson
    from AutoSegNetLib.evaluation.evaluate import evaluate_folders, labels_for

    labels = labels_for(DatasetJson.load(raw_folder / "dataset.json"), None, regions=False)
    return evaluate_folders(test_folder / "labels", test_folder / "predictions", labels)


__all__ = ["DEMO_ID", "DEMO_NAME", "DemoSettings", "run_demo"]
