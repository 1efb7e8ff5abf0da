"""Verify (if asked), fingerprint and plan a raw dataset; skipped when nothing changed since the last run.

Entry point: :func:`plan_dataset`, called by ``autosegnet plan-and-preprocess`` and ``autosegnet demo``. With
``reuse`` (the default) the three stages are skipped when the raw dataset's files and the settings are those of
the last successful run (:mod:`AutoSegNetLib.planning.chain_cache`); the plans of that run are returned then.
A stop request during verify or fingerprint raises :class:`StopRequested`; nothing is written then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from AutoSegNetLib.dataset.problems import VerificationReport
from AutoSegNetLib.dataset.verify import verify_dataset
from AutoSegNetLib.fingerprint import extract_fingerprint
from AutoSegNetLib.layout import PLANS_FILE
from AutoSegNetLib.planning.chain_cache import chain_key, is_up_to_date, remember
from AutoSegNetLib.planning.experiment import plan_experiment
from AutoSegNetLib.planning.plans import Plans
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.stop import StopRequest, StopRequested
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanSettings:
    """How :func:`plan_dataset` runs.

    ``verify``: check the raw dataset's integrity first (:func:`verify_dataset`). ``planner``, ``gpu_memory_gb``
    and ``configurations``: as :func:`plan_experiment`. ``num_workers``: processes of verify and fingerprint, one
    case each. ``reuse``: skip the stages when nothing changed since the last run, and record this run for the
    next one; never skipped with ``gpu_memory_gb="auto"`` (the local GPU may be another one now).
    """

    verify: bool = False
    planner: str = "default"
    gpu_memory_gb: float | str | None = None
    configurations: tuple[str, ...] | None = None
    num_workers: int = 1
    reuse: bool = True

    def cache_settings(self) -> dict[str, Any]:
        """The settings that decide whether an earlier run's results still hold (part of the cache key)."""
        settings: dict[str, Any] = {"verify": self.verify, "planner": self.planner, "gpu_memory_gb": self.gpu_memory_gb}
        if self.configurations is not None:  # absent when every configuration is planned, as in older keys
            settings["configurations"] = list(self.configurations)
        return settings


@dataclass(frozen=True)
class PlannedDataset:
    """What :func:`plan_dataset` did: ``plans`` (None when verify found errors: nothing was fingerprinted or
    planned), the ``verification`` report (None when not verified) and whether an earlier run was ``reused``."""

    plans: Plans | None
    verification: VerificationReport | None = None
    reused: bool = False


def plan_dataset(workspace: Workspace, dataset: str | int, settings: PlanSettings | None = None,
                 reporter: ProgressReporter | None = None, stop: StopRequest | None = None) -> PlannedDataset:
    """Verify (``settings.verify``), fingerprint and plan ``dataset``; writes ``fingerprint.json`` and
    ``plans.json`` in ``preprocessed/<Dataset>/``, unless an unchanged earlier run can be reused."""
    settings = settings or PlanSettings()
    reporter = reporter or ProgressReporter("none")
    stop = stop or StopRequest()
    name = workspace.resolve_dataset(dataset)
    preprocessed = workspace.preprocessed / name
    if not settings.reuse:
        return _run_stages(workspace, name, settings, reporter, stop)
    key = chain_key(workspace.raw / name, settings.cache_settings())
    if settings.gpu_memory_gb != "auto" and is_up_to_date(preprocessed, key):
        log.info("Raw dataset and planning settings unchanged since the last run: reusing its verification, "
                 "fingerprint and plans (%s).", preprocessed / PLANS_FILE)
        return PlannedDataset(Plans.load(preprocessed / PLANS_FILE), reused=True)
    planned = _run_stages(workspace, name, settings, reporter, stop)
    if planned.plans is not None:
        remember(preprocessed, key)
    return planned


def _run_stages(workspace: Workspace, name: str, settings: PlanSettings, reporter: ProgressReporter,
                stop: StopRequest) -> PlannedDataset:
    report = _verify(workspace, name, settings, reporter, stop) if settings.verify else None
    if report is not None and not report.ok:
        return PlannedDataset(None, report)
    extract_fingerprint(workspace, name, settings.num_workers, reporter, stop=stop)
    stop.raise_if_requested("stopped before planning")
    plans = plan_experiment(workspace, name, settings.planner, settings.gpu_memory_gb, settings.configurations,
                            reporter)
    return PlannedDataset(plans, report)


def _verify(workspace: Workspace, name: str, settings: PlanSettings, reporter: ProgressReporter,
            stop: StopRequest) -> VerificationReport:
    """The full integrity check; every problem is logged as a warning (the caller decides about errors)."""
    reporter.emit("stage", stage="verify", dataset=name)
    report = verify_dataset(workspace.raw / name, num_workers=settings.num_workers, reporter=reporter, stop=stop)
    if not report.complete:
        raise StopRequested(f"verify stopped after {report.checked_cases} of "
                            f"{report.num_training_cases + report.num_test_cases} cases; nothing was planned")
    for problem in report.problems:
        log.warning("%s", problem)
    return report
