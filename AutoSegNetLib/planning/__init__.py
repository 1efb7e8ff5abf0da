"""Experiment planning: from a dataset fingerprint to ``plans.json``.

Entry points: :func:`plan_experiment` (fingerprint -> plans.json) and :func:`plan_dataset` (verify -> fingerprint
-> plan, reused while the raw dataset and the settings are unchanged); planners: :class:`ExperimentPlanner`,
:func:`get_planner`, :func:`register_planner`; the plans file: :class:`Plans`.
"""

from AutoSegNetLib.planning.experiment import PLANS_FILE, plan_experiment, select_configurations
from AutoSegNetLib.planning.plan_dataset import PlannedDataset, PlanSettings, plan_dataset
from AutoSegNetLib.planning.planners import (
    CONFIGURATIONS,
    PLANNERS,
    ExperimentPlanner,
    MemoryReference,
    get_planner,
    register_planner,
)
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans, ResamplingSettings
from AutoSegNetLib.planning.summary import plans_summary

__all__ = [
    "CONFIGURATIONS",
    "PLANNERS",
    "PLANS_FILE",
    "ConfigurationPlan",
    "ExperimentPlanner",
    "MemoryReference",
    "PlanSettings",
    "PlannedDataset",
    "Plans",
    "ResamplingSettings",
    "get_planner",
    "plan_dataset",
    "plan_experiment",
    "plans_summary",
    "register_planner",
    "select_configurations",
]
