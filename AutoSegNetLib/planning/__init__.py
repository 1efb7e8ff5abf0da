"""Experiment planning: from a dataset fingerprint to ``plans.json``."""
