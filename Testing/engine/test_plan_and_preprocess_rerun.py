"""plan-and-preprocess re-runs: nothing changed -> verify/fingerprint/plan are reused; a change -> they run."""

from __future__ import annotations

import os

from AutoSegNetLib.cli import main
from AutoSegNetLib.demo.synthetic import write_synthetic_dataset
from AutoSegNetLib.workspace import Workspace

DATASET = "Dataset900_SyntheticEllipsoids"


def _run(root) -> int:
    return main(["plan-and-preprocess", "900", "--workspace", str(root), "-c", "3d_fullres", "-np", "0",
                 "--verify", "--progress", "none"])


def test_a_rerun_with_nothing_changed_reuses_fingerprint_and_plans_and_a_touched_case_redoes_them(tmp_path):
    raw = write_synthetic_dataset(Workspace.at(tmp_path), num_cases=3)
    fingerprint = tmp_path / "preprocessed" / DATASET / "fingerprint.json"
    assert _run(tmp_path) == 0
    first = fingerprint.stat().st_mtime_ns

    assert _run(tmp_path) == 0
    assert fingerprint.stat().st_mtime_ns == first  # reused, not rewritten

    image = raw / "imagesTr" / "case_001_0000.nii.gz"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    assert _run(tmp_path) == 0
    assert fingerprint.stat().st_mtime_ns != first  # the changed input made it run again


def test_another_planner_setting_plans_again(tmp_path):
    write_synthetic_dataset(Workspace.at(tmp_path), num_cases=3)
    plans = tmp_path / "preprocessed" / DATASET / "plans.json"
    assert _run(tmp_path) == 0
    first = plans.stat().st_mtime_ns
    assert main(["plan-and-preprocess", "900", "--workspace", str(tmp_path), "-c", "3d_fullres", "-np", "0",
                 "--verify", "--progress", "none", "--gpu-memory-gb", "10"]) == 0
    assert plans.stat().st_mtime_ns != first
