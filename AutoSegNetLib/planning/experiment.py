"""Plan a dataset: fingerprint + dataset.json -> ``preprocessed/<Dataset>/plans.json`` (+ a dataset.json copy).

Entry point: :func:`plan_experiment`.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from AutoSegNetLib.dataset import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError, did_you_mean
from AutoSegNetLib.fingerprint import FINGERPRINT_FILE, Fingerprint
from AutoSegNetLib.layout import DATASET_JSON_FILE, PLANS_FILE
from AutoSegNetLib.planning.memory import resolve_gpu_memory_gb
from AutoSegNetLib.planning.planners import CONFIGURATIONS, ExperimentPlanner, get_planner
from AutoSegNetLib.planning.plans import Plans
from AutoSegNetLib.planning.summary import plans_summary
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.atomic import atomic_path
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)


def plan_experiment(workspace: Workspace, dataset: str | int, planner: str | ExperimentPlanner = "default",
                    gpu_memory_gb: float | str | None = None, configurations: Sequence[str] | None = None,
                    reporter: ProgressReporter | None = None) -> Plans:
    """Plan ``dataset`` from its fingerprint and write ``plans.json`` and a copy of ``dataset.json``.

    ``planner``: a registered name (``default``, ``resenc-m``, ``resenc-l``, ``resenc-xl``) or a planner.
    ``gpu_memory_gb``: ``None`` (the planner's default), a number of GB, or ``"auto"`` (the local GPU).
    ``configurations``: keep only these in ``plans.json`` (default: every warranted one); asking for
    ``3d_cascade_fullres`` keeps ``3d_lowres`` too. Custom configurations (other names) already in an
    existing ``plans.json`` of the same plans name are kept.
    """
    reporter = reporter or ProgressReporter("none")
    started = time.perf_counter()
    name = workspace.resolve_dataset(dataset)
    out_folder = workspace.preprocessed / name
    fingerprint = _load_fingerprint(out_folder / FINGERPRINT_FILE, name)
    raw_json = workspace.raw / name / DATASET_JSON_FILE
    dataset_json = DatasetJson.load(raw_json)
    chosen = planner if isinstance(planner, ExperimentPlanner) else get_planner(planner)
    chosen = chosen.with_gpu_memory(resolve_gpu_memory_gb(gpu_memory_gb, chosen.gpu_memory_target_gb))
    reporter.emit("stage", stage="plan", dataset=name, planner=chosen.name, gpu_memory_gb=chosen.gpu_memory_target_gb)

    plans = chosen.plan(fingerprint, dataset_json, name)
    plans.configurations = select_configurations(plans, configurations)
    _keep_custom_configurations(plans, out_folder / PLANS_FILE)
    plans.save(out_folder / PLANS_FILE)
    with atomic_path(out_folder / DATASET_JSON_FILE, suffix=".json") as tmp:
        shutil.copyfile(raw_json, tmp)

    seconds = time.perf_counter() - started
    log.info("%s", plans_summary(plans))
    log.info("Plans written to %s (%.1f s)", out_folder / PLANS_FILE, seconds)
    reporter.emit("done", stage="plan", dataset=name, path=str(out_folder / PLANS_FILE),
                  configurations=list(plans.configurations), seconds=round(seconds, 2))
    return plans


def select_configurations(plans: Plans, wanted: Sequence[str] | None) -> dict:
    """The planned configurations restricted to ``wanted`` (all if None), explaining the ones not planned."""
    if wanted is None:
        return plans.configurations
    wanted = list(dict.fromkeys(wanted))
    for name in wanted:
        if name not in CONFIGURATIONS:
            raise AutoSegNetError(
                f"Unknown configuration {name!r}.{did_you_mean(name, CONFIGURATIONS)} "
                f"Configurations: {', '.join(CONFIGURATIONS)}."
            )
    if "3d_cascade_fullres" in wanted and "3d_lowres" not in wanted:
        wanted.append("3d_lowres")
    for name in wanted:
        if name not in plans.configurations:
            log.warning("%s is not planned for %s: %s", name, plans.dataset_name, _why_not(name, plans))
    kept = {n: c for n, c in plans.configurations.items() if n in wanted}
    if not kept:
        raise AutoSegNetError(
            f"None of the requested configurations ({', '.join(wanted)}) applies to {plans.dataset_name}; "
            f"planned: {', '.join(plans.configurations)}."
        )
    return kept


def _why_not(name: str, plans: Plans) -> str:
    if "3d_fullres" not in plans.configurations:
        return "the images are 2D"
    if name in ("3d_lowres", "3d_cascade_fullres"):
        return "the 3d_fullres patch already covers at least 25% of the median image"
    return "not warranted"


def _keep_custom_configurations(plans: Plans, path: Path) -> None:
    if not path.is_file():
        return
    try:
        old = Plans.load(path)
    except AutoSegNetError as exc:
        log.warning("Replacing %s, which could not be read: %s", path, exc)
        return
    if old.plans_name != plans.plans_name:
        return
    for name, conf in old.configurations.items():
        if name not in CONFIGURATIONS and name not in plans.configurations:
            log.info("Keeping custom configuration %r from the existing %s", name, path.name)
            plans.configurations[name] = conf


def _load_fingerprint(path: Path, dataset: str) -> Fingerprint:
    if not path.is_file():
        raise AutoSegNetError(
            f"No fingerprint for {dataset} ({path} is missing). Run `autosegnet fingerprint {dataset}` first "
            "(or `autosegnet plan-and-preprocess`)."
        )
    return Fingerprint.load(path)
