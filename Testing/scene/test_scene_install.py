"""Dependency installation asks first, uses the PyTorch extension for torch and pip_ensure for the rest."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import slicer
from AutoSegNetSceneLib import install

REQUIREMENTS = Path(__file__).resolve().parents[2] / "AutoSegNet" / "Resources" / "requirements.txt"


@pytest.fixture
def calls():
    return []


@pytest.fixture
def torch_missing(monkeypatch):
    real = install.installed_version
    monkeypatch.setattr(install, "installed_version", lambda name: None if name == "torch" else real(name))


@pytest.fixture
def pytorch_extension(monkeypatch, calls):
    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, torchVersionRequirement=None):
            calls.append(("installTorch", askConfirmation, torchVersionRequirement))
            return None  # the user said no

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))


@pytest.fixture
def slicer_packaging(monkeypatch, calls):
    module = types.ModuleType("slicer.packaging")
    module.load_requirements = lambda path: calls.append(("load_requirements", Path(path))) or ["scipy>=1.10"]
    module.pip_ensure = lambda reqs, requester=None: calls.append(("pip_ensure", reqs, requester))
    monkeypatch.setitem(sys.modules, "slicer.packaging", module)
    monkeypatch.setattr(slicer, "packaging", module, raising=False)


def test_the_shipped_requirements_leave_torch_and_slicers_own_packages_out():
    names = [install.REQUIREMENT_NAME.match(r).group(1).lower() for r in install.read_requirements(REQUIREMENTS)]
    assert names and not {"torch", "simpleitk", "numpy"} & set(names)
    assert all(">=" in r or "==" not in r for r in install.read_requirements(REQUIREMENTS))  # never pinned


def test_torch_is_installed_through_the_pytorch_extension_which_asks(torch_missing, pytorch_extension, calls):
    assert install.install_dependencies(REQUIREMENTS, confirm=lambda text: True) is False
    assert calls == [("installTorch", True, install.TORCH_REQUIREMENT)]


def test_without_the_pytorch_extension_the_error_says_how_to_get_it(torch_missing, monkeypatch):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    with pytest.raises(RuntimeError, match="Extensions Manager"):
        install.install_dependencies(REQUIREMENTS, confirm=lambda text: True)


def test_other_packages_go_through_pip_ensure_which_asks_itself(slicer_packaging, calls):
    asked = []
    install.install_dependencies(REQUIREMENTS, confirm=asked.append)
    assert calls == [("load_requirements", REQUIREMENTS), ("pip_ensure", ["scipy>=1.10"], "AutoSegNet")]
    assert asked == []


def test_older_slicer_falls_back_to_pip_install_after_asking(monkeypatch, calls, tmp_path):
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)
    monkeypatch.setattr(slicer.util, "pip_install", lambda text: calls.append(("pip_install", text)))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nscipy>=1.10\nsurely-not-installed-package>=1\n-r other.txt\n")
    assert install.install_dependencies(requirements, confirm=lambda text: False) is False
    assert calls == []
    install.install_dependencies(requirements, confirm=lambda text: calls.append(("asked", text)) or True)
    assert calls[0][0] == "asked" and "surely-not-installed-package" in calls[0][1]
    assert calls[1] == ("pip_install", "surely-not-installed-package>=1")


def test_the_dependency_report_names_what_is_missing(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("scipy\nsurely-not-installed-package\n")
    report = install.dependency_report(requirements)
    assert report.splitlines()[0].startswith("torch ") and "missing: surely-not-installed-package" in report
