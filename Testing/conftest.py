"""Fixtures shared by all test folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AUTOSEGNET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


def shared_data_path(*parts: str) -> Path:
    """Path inside the shared real-data folder, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (expected ../shared/data beside the repository)")
    return path


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder (``../shared/data``); skips the test when it is absent."""
    return shared_data_path()


@pytest.fixture(autouse=True)
def _two_torch_threads():
    """Keep torch to the 2 cores CI has (no-op when torch is not imported)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(2)
    yield
