"""Installing the engine's Python dependencies inside Slicer, after asking the user.

- torch comes from the PyTorch extension (``PyTorchUtils.PyTorchUtilsLogic().installTorch``), which picks the
  CUDA build that matches the driver (light-the-torch);
- everything else from ``Resources/requirements.txt`` through ``slicer.packaging.pip_ensure`` (Slicer >= 5.11;
  it asks before installing), or ``slicer.util.pip_install`` after our own confirmation on older Slicer.

Checking never imports the packages (``importlib.metadata`` only), so the module stays light at start-up.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

TORCH_REQUIREMENT = ">=2.1"
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def read_requirements(path: Path) -> list[str]:
    """Requirement lines of a requirements.txt (comments, blank lines and pip options skipped)."""
    lines = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_requirements(requirements: list[str]) -> list[str]:
    """Requirements whose package is not installed (versions are checked by pip_ensure itself)."""
    return [req for req in requirements if installed_version(REQUIREMENT_NAME.match(req).group(1)) is None]


def dependency_report(requirements_path: Path) -> str:
    """One line per dependency for the Setup section: what is installed, what is missing."""
    torch = installed_version("torch")
    lines = [f"torch {torch}" if torch else "torch: missing (installed through the PyTorch extension)"]
    missing = missing_requirements(read_requirements(requirements_path))
    lines.append("other packages: all installed" if not missing else f"missing: {', '.join(missing)}")
    return "\n".join(lines)


def install_dependencies(requirements_path: Path, confirm: Callable[[str], bool]) -> bool:
    """Install torch and the requirements where missing; ``confirm(text)`` asks the user first.

    Returns True when everything is installed afterwards. Raises RuntimeError with instructions when the
    PyTorch extension is missing.
    """
    import slicer

    if installed_version("torch") is None:
        torch_logic = _torch_logic()
        if torch_logic.installTorch(askConfirmation=True, torchVersionRequirement=TORCH_REQUIREMENT) is None:
            return False
    requirements = read_requirements(requirements_path)
    try:
        import slicer.packaging as packaging  # Slicer >= 5.11
    except ImportError:
        packaging = None
    if packaging is not None and hasattr(packaging, "pip_ensure"):
        packaging.pip_ensure(packaging.load_requirements(str(requirements_path)), requester="AutoSegNet")
        return not missing_requirements(requirements)
    missing = missing_requirements(requirements)
    if missing:
        if not confirm(f"AutoSegNet needs these Python packages: {', '.join(missing)}. Install them now?"):
            return False
        slicer.util.pip_install(" ".join(missing))
    return not missing_requirements(requirements)


def _torch_logic():
    try:
        import PyTorchUtils
    except ImportError:
        raise RuntimeError(
            "AutoSegNet needs the PyTorch extension to install torch. Install 'PyTorch' from the Extensions "
            "Manager, restart Slicer, then click 'Install dependencies' again."
        ) from None
    return PyTorchUtils.PyTorchUtilsLogic()
