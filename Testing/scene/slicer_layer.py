"""Slicer's real pure-Python layer over slicer-core's real MRML, for running the module outside the application.

What runs for real:
- MRML, Segmentations, Volumes, Terminologies logic: the compiled classes of the ``slicer-core`` wheel;
- ``slicer.util``, ``slicer.i18n``, ``slicer.parameterNodeWrapper``, ``slicer.ScriptedLoadableModule`` and
  (5.12) ``slicer.packaging``: Slicer's own files, unchanged, from ``../shared/slicer/python/<tag>/slicer/``
  (v5.10.0 and v5.12.3), put in front of the wheel's ``slicer`` package path.

What is stood in for, and why (each needs PythonQt, i.e. the Slicer application's C++ Qt bindings, which no
Python package provides):
- ``qt`` and ``ctk``: modules whose every attribute is an inert class, so that Slicer's files import (they
  reference ``qt.QWidget``, ``ctk.ctkPathLineEdit`` ... in GUI connectors that the logic never calls);
- ``slicer.app``: ``qSlicerApplication``; only ``translate`` (Slicer 5.10's ``slicer.i18n.translate`` calls it
  unguarded) returns the text unchanged; ``processEvents`` (``slicer.util.delayDisplay`` in the self-test
  calls it) has no Qt event loop to run; the override cursor of ``slicer.util.tryWithErrorDisplay`` has no
  screen, and ``testingEnabled()`` is True as under ``Slicer --testing`` (no message boxes, errors raise);
- Slicer's Qt widget classes (``slicer.qMRMLNodeComboBox``, ``slicer.qSlicerWidget`` ...): inert classes, for
  the same reason (the parameter node wrapper's GUI connectors name them in annotations);
- widgets: ``AutoSegNetWidget`` cannot be built (it needs ``qt.QTimer`` and a loaded ``.ui``). Its timer callback
  only calls the workflow's ``poll`` (tested for real); the widget's wiring to the ``.ui`` is checked statically
  in ``Testing/packaging/test_module_ui.py``.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import slicer

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "AutoSegNet"
SLICER_PYTHON = REPO_ROOT.parent / "shared" / "slicer" / "python"
TAGS = ("v5.10.0", "v5.12.3")
DEFAULT_TAG = TAGS[-1]
# Slicer's pure-Python submodules that replace the wheel's (or fill its gaps), in import order.
PURE_MODULES = ("util", "i18n", "parameterNodeWrapper", "ScriptedLoadableModule", "packaging")
# Slicer's Qt widget classes that Slicer's pure-Python files name at import time.
QT_WIDGET_CLASSES = ("qMRMLNodeComboBox", "qMRMLRangeWidget", "qMRMLScreenShotDialog", "qMRMLSliderWidget",
                     "qMRMLSpinBox", "qMRMLUtils", "qMRMLWidget", "qSlicerWidget")
# Our modules that bind names from the layer at import time and must be re-imported after a switch.
OUR_MODULES = ("AutoSegNet",)

_active: str | None = None


class _InertType(type):
    """Class attributes of an inert class (enum values such as ``qt.Qt.WaitCursor``) are their own names."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return f"{cls.__name__}.{name}"


class _Inert(metaclass=_InertType):
    """Any Qt/CTK class: accepts every constructor call; the logic never uses one."""

    def __init__(self, *args, **kwargs) -> None:
        self.args = args


class _QtStandIn(types.ModuleType):
    """``qt`` / ``ctk``: every attribute is an inert class (cached, so ``isinstance`` checks are consistent)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (_Inert,), {})
        setattr(self, name, cls)
        return cls


class _AppStandIn:
    """``slicer.app`` (qSlicerApplication): translation returns the source text."""

    @staticmethod
    def translate(context: str, text: str) -> str:
        return text

    @staticmethod
    def processEvents() -> None:
        """No Qt event loop outside the application: nothing to process."""

    @staticmethod
    def setOverrideCursor(cursor) -> None:
        """No screen: no cursor to change."""

    @staticmethod
    def restoreOverrideCursor() -> None:
        """No screen: no cursor to restore."""

    @staticmethod
    def testingEnabled() -> bool:
        return True


def available(tag: str = DEFAULT_TAG) -> bool:
    return (SLICER_PYTHON / tag / "slicer" / "ScriptedLoadableModule.py").is_file()


def missing_reason(tag: str = DEFAULT_TAG) -> str:
    return f"Slicer's Python layer not found at {SLICER_PYTHON / tag / 'slicer'} (expected ../shared/slicer)"


def activate(tag: str = DEFAULT_TAG) -> None:
    """Make ``slicer.<pure module>`` Slicer's own files of ``tag``; a no-op when ``tag`` is already active."""
    global _active
    if _active == tag:
        return
    folder = str(SLICER_PYTHON / tag / "slicer")
    for name in list(sys.modules):
        parts = name.split(".")
        if (parts[0] == "slicer" and len(parts) > 1 and parts[1] in PURE_MODULES) or parts[0] in OUR_MODULES:
            del sys.modules[name]
    shared = str(SLICER_PYTHON)
    slicer.__path__[:] = [folder, *[p for p in slicer.__path__ if not p.startswith(shared)]]
    for name in ("qt", "ctk"):
        if not isinstance(sys.modules.get(name), _QtStandIn):
            sys.modules[name] = _QtStandIn(name)
    slicer.app = _AppStandIn()
    widgets = sys.modules["qt"]
    for name in QT_WIDGET_CLASSES:
        if not hasattr(slicer, name):
            setattr(slicer, name, getattr(widgets, name))
    if getattr(slicer, "mrmlScene", None) is None:
        slicer.mrmlScene = slicer.vtkMRMLScene()
    for name in PURE_MODULES:
        if (Path(folder) / f"{name}.py").is_file() or (Path(folder) / name).is_dir():
            setattr(slicer, name, importlib.import_module(f"slicer.{name}"))
    _register_segmentation_converters()
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    _active = tag


def active_tag() -> str | None:
    return _active


def load_module(tag: str = DEFAULT_TAG):
    """Import ``AutoSegNet.py`` on ``tag``'s layer and instantiate the module class as Slicer does."""
    activate(tag)
    import AutoSegNet

    parent = types.SimpleNamespace(path=str(MODULE_DIR / "AutoSegNet.py"))
    AutoSegNet.AutoSegNet(parent)
    return AutoSegNet


def _register_segmentation_converters() -> None:
    """What Slicer's Segmentations module does at start-up: register the representation converters."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.GetConverterRules() and factory.GetConverterRules().__len__() > 0:
        return
    for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
                 slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule,
                 slicer.vtkClosedSurfaceToFractionalLabelmapConversionRule,
                 slicer.vtkFractionalLabelmapToClosedSurfaceConversionRule):
        factory.RegisterConverterRule(rule())
