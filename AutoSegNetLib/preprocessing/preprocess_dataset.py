"""The preprocessing stage: every training case of a raw dataset -> ``preprocessed/<Dataset>/<data_identifier>/``.

Incremental (see :mod:`AutoSegNetLib.preprocessing.incremental`): only new or changed cases are processed,
cases that left the raw dataset are removed, and changed preprocessing settings redo everything. Each worker
process handles one case at a time and reads it once for all requested configurations; configurations that
would produce identical arrays for a case (e.g. ``2d`` and ``3d_fullres`` at the same spacing) share the files
through hard links. A stop request ends the run between cases: the cases written stay, the folders stay
marked incomplete (:data:`~AutoSegNetLib.preprocessing.storage.INCOMPLETE_MARKER`, refused by training) until a
run does all its work. Only such a run writes the folder's :mod:`~AutoSegNetLib.preprocessing.manifest` (every
raw case with its content hash), which training requires.

Safety: the cheap integrity checks of ``verify`` run first (``require_training_layout``; a numTraining that no
longer matches only warns here, as incremental runs follow added and removed cases -- the fingerprint, first
stage of plan-and-preprocess, refuses it) and on every case read (``read_checked_case``, see
:mod:`AutoSegNetLib.dataset.verify`); each configuration folder is locked (:data:`LOCK_FILE`), so a second run
on it fails at once naming the running one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.dataset.raw import Case, RawDataset
from AutoSegNetLib.dataset.verify import read_checked_case, require_training_layout
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import PLANS_FILE_STEM
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans
from AutoSegNetLib.preprocessing.case import preprocess_case_arrays, target_spacing
from AutoSegNetLib.preprocessing.incremental import (
    CaseSource,
    FolderState,
    combined_hash,
    is_up_to_date,
    preprocessing_hash,
    record_files,
)
from AutoSegNetLib.preprocessing.manifest import Manifest, invalidate
from AutoSegNetLib.preprocessing.storage import link_case, mark_complete, mark_incomplete, remove_case, save_case
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.atomic import read_json
from AutoSegNetLib.utils.locks import FileLock
from AutoSegNetLib.utils.stop import StopRequest
from AutoSegNetLib.utils.workers import run_parallel
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)
_STATE_SAVE_INTERVAL_S = 10.0
#: Lock file in a configuration folder, held while a run preprocesses into it (see :mod:`AutoSegNetLib.utils.locks`).
LOCK_FILE = ".preprocessing.lock"


@dataclass
class _Target:
    """One configuration folder a case must be written to."""

    configuration: ConfigurationPlan
    folder: Path
    settings_hash: str


@dataclass
class _Task:
    """Everything a worker needs for one case (picklable)."""

    raw_folder: Path
    case: Case
    targets: list[_Target]
    plans: Plans
    dataset_json: DatasetJson


def preprocess_dataset(workspace: Workspace, dataset: str | int, configurations: list[str], num_workers: int,
                       reporter: ProgressReporter | None = None, plans_name: str = PLANS_FILE_STEM,
                       stop: StopRequest | None = None) -> dict[str, Any]:
    """Preprocess the training cases of ``dataset`` for ``configurations`` (names in ``<plans_name>.json``).

    Returns a summary: per configuration the folder, the number of cases, which were (re)written, how many
    were already up to date and which were removed; plus the wall time in ``seconds`` and ``stopped``: True when
    ``stop`` was requested before every case was done (no further case is started then).
    """
    started = time.perf_counter()
    reporter = reporter or ProgressReporter("none")
    name = workspace.resolve_dataset(dataset)
    plans_path = workspace.preprocessed / name / f"{plans_name}.json"
    if not plans_path.is_file():
        raise AutoSegNetError(f"No plans at {plans_path}. Run `autosegnet plan {dataset}` first.")
    plans = Plans.load(plans_path)
    raw = RawDataset.open(workspace.raw / name)
    require_training_layout(raw.folder, only_warn=("num_training_mismatch",))  # cases may come and go in between
    cases = raw.training_cases()
    if not cases:
        raise AutoSegNetError(f"{raw.folder} has no training cases (imagesTr is empty or missing).")
    targets = _targets(plans, configurations, workspace.preprocessed / name, raw.dataset_json)
    with contextlib.ExitStack() as locks:
        for target in targets:
            locks.enter_context(_lock(target, name, dataset))
        summary = _preprocess(raw, cases, plans, targets, num_workers, reporter, stop)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


def _preprocess(raw: RawDataset, cases: list[Case], plans: Plans, targets: list[_Target], num_workers: int,
                reporter: ProgressReporter, stop: StopRequest | None) -> dict[str, Any]:
    """The work of :func:`preprocess_dataset` once its folders are locked; the manifests are written last."""
    for target in targets:
        invalidate(target.folder)  # from here on the folder counts as incomplete until the manifest is back
    states = {t.folder: FolderState.load(t.folder) for t in targets}
    work, summary = _plan_work(cases, targets, states, raw.folder)
    reporter.emit("stage", stage="preprocess", dataset=raw.name, configurations=[t.configuration.name for t in targets],
                  cases=len(cases), to_process=len(work), message=_overview(summary))
    tasks = [_Task(raw.folder, case, case_targets, plans, raw.dataset_json) for case, case_targets in work]
    done = _run(tasks, states, summary, num_workers, reporter, stop)
    if done == len(tasks):
        for target in targets:
            cases_hashes = {case.name: states[target.folder].cases[case.name].input_hash for case in cases}
            Manifest(cases_hashes, target.settings_hash).save(target.folder)
            mark_complete(target.folder)
    summary["stopped"] = done < len(tasks)
    return summary


def _lock(target: _Target, dataset_name: str, dataset: str | int) -> FileLock:
    """The lock of one configuration folder (one preprocessing run per folder at a time)."""
    conf = target.configuration.name
    return FileLock(target.folder / LOCK_FILE, f"Preprocessing of {dataset_name} {conf}",
                    f"Wait for it to finish (or stop it), then run `autosegnet preprocess {dataset} -c {conf}` again "
                    "if needed; two runs writing one folder would mix their cases.")


def _targets(plans: Plans, configurations: list[str], folder: Path, dataset_json: DatasetJson) -> list[_Target]:
    """One target per distinct data folder; configurations sharing a folder must preprocess identically."""
    if not configurations:
        raise AutoSegNetError(f"No configuration given; planned: {', '.join(plans.configurations)}.")
    by_folder: dict[Path, _Target] = {}
    for conf_name in configurations:
        conf = plans.configuration(conf_name)
        target = _Target(conf, folder / conf.data_identifier, preprocessing_hash(plans, conf, dataset_json))
        other = by_folder.get(target.folder)
        if other is not None and other.settings_hash != target.settings_hash:
            raise AutoSegNetError(
                f"Configurations {other.configuration.name!r} and {conf_name!r} share the data folder "
                f"{conf.data_identifier!r} but preprocess differently; give them different data_identifier values."
            )
        by_folder.setdefault(target.folder, target)
    return list(by_folder.values())


def _plan_work(cases: list[Case], targets: list[_Target], states: dict[Path, FolderState], raw_folder: Path
               ) -> tuple[list[tuple[Case, list[_Target]]], dict[str, Any]]:
    """Decide which case goes to which folder; remove vanished cases; prune the caches of cases to redo."""
    names = {c.name for c in cases}
    work: dict[str, list[_Target]] = {}
    summary: dict[str, Any] = {}
    for target in targets:
        state = states[target.folder]
        target.folder.mkdir(parents=True, exist_ok=True)
        listing = {entry.name for entry in os.scandir(target.folder)}
        fresh: dict[str, CaseSource] = {}
        for case in cases:
            ok, source = is_up_to_date(case, state.source_of(case.name, listing), target.settings_hash,
                                       raw_folder, listing)
            if ok:
                fresh[case.name] = source
            else:
                work.setdefault(case.name, []).append(target)
        removed = sorted(_case_names(listing) - names)
        for name in removed:
            remove_case(target.folder, name)
        if fresh != state.cases:
            state.cases = fresh
            state.save()
        summary[target.configuration.name] = {
            "data_identifier": target.configuration.data_identifier, "folder": str(target.folder),
            "cases": len(cases), "preprocessed": [], "unchanged": len(fresh), "removed": removed,
        }
    by_name = {c.name: c for c in cases}
    return [(by_name[n], work[n]) for n in sorted(work)], summary


def _run(tasks: list[_Task], states: dict[Path, FolderState], summary: dict[str, Any], num_workers: int,
         reporter: ProgressReporter, stop: StopRequest | None) -> int:
    """Process the tasks (until a stop request); returns how many were done."""
    if not tasks:
        return 0
    for folder, pending in Counter(t.folder for task in tasks for t in task.targets).items():
        mark_incomplete(folder, pending)
    last_save = time.monotonic()
    index = 0
    try:
        for index, (task, result) in enumerate(run_parallel(_process_case, tasks, num_workers, _describe, stop), 1):
            for target in task.targets:
                states[target.folder].cases[task.case.name] = CaseSource.from_dict(result["source"][target.folder.name])
                summary[target.configuration.name]["preprocessed"].append(task.case.name)
            reporter.emit("case", case=task.case.name, index=index, total=len(tasks), seconds=result["seconds"],
                          configurations=[t.configuration.name for t in task.targets])
            if time.monotonic() - last_save > _STATE_SAVE_INTERVAL_S:
                for state in states.values():
                    state.save()
                last_save = time.monotonic()
    finally:
        for state in states.values():
            state.save()
    for entry in summary.values():
        entry["preprocessed"].sort()
    return index


def _process_case(task: _Task) -> dict[str, Any]:
    """Worker: read one case once, preprocess it for each target folder, write it. Returns timing and sources."""
    started = time.perf_counter()
    records = record_files(task.case, task.raw_folder)
    input_hash = combined_hash(records)
    image, seg, geometry = read_checked_case(RawDataset(task.raw_folder, task.dataset_json), task.case)
    done: dict[tuple, Path] = {}
    sources = {}
    for target in task.targets:
        conf = target.configuration
        source = CaseSource(records, input_hash, target.settings_hash)
        spacing = [geometry.spacing[a] for a in task.plans.transpose_forward]
        same_as = _identity(conf, target_spacing(spacing, conf), task.plans)
        if same_as in done:
            properties = _reuse_properties(done[same_as], task.case.name, conf, source)
            link_case(done[same_as], target.folder, task.case.name, properties)
        else:
            data, seg_out, properties, locations = preprocess_case_arrays(
                image, seg, geometry, task.plans, conf, task.dataset_json, input_hash, what=f"case {task.case.name!r}")
            properties["source"] = source.to_dict()
            if locations is not None:
                properties["class_locations"] = locations
            save_case(target.folder, task.case.name, data, seg_out, properties)
            done[same_as] = target.folder
        sources[target.folder.name] = source.to_dict()
    return {"seconds": round(time.perf_counter() - started, 4), "source": sources}


def _identity(conf: ConfigurationPlan, spacing: list[float], plans: Plans) -> tuple:
    """What decides a case's preprocessed arrays apart from the case itself."""
    return (tuple(spacing), tuple(conf.normalization_schemes), tuple(conf.use_mask_for_norm),
            tuple(sorted(vars(conf.resampling).items())))


def _reuse_properties(folder: Path, name: str, conf: ConfigurationPlan, source: CaseSource) -> dict[str, Any]:
    properties = read_json(folder / f"{name}.json")
    properties["configuration"] = conf.name
    properties["source"] = source.to_dict()
    return properties


def _case_names(listing: set[str]) -> set[str]:
    return {n[:-5] for n in listing if n.endswith(".json") and not n.startswith(".")}


def _describe(task: _Task) -> str:
    return f"case {task.case.name!r}"


def _overview(summary: dict[str, Any]) -> str:
    return "; ".join(f"{conf}: {s['unchanged']}/{s['cases']} up to date, {len(s['removed'])} removed"
                     for conf, s in summary.items())
