"""Minimal stand-ins for the pieces of Slicer's Python layer that the ``slicer-core`` wheel lacks.

``slicer-core`` gives the real MRML, Segmentations and Terminologies classes and Slicer's ``slicer.util`` but
not the Qt-based parts: ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``, ``slicer.i18n``,
``slicer.mrmlScene``, ``slicer.selfTests``. :func:`install` provides just enough of them to import
``AutoSegNet.py`` and run its Logic and self-test body against real MRML. Widgets are not available.

The behaviour follows Slicer's ``Base/Python/slicer/ScriptedLoadableModule.py`` (parameter node as a
singleton ``vtkMRMLScriptedModuleNode`` tagged with the module name, ``runTest`` calling the test methods
between ``setUp``/``tearDown``) and ``Base/Python/slicer/parameterNodeWrapper`` (typed properties stored as
node parameters, MRML nodes as node references, defaults written on construction).
"""

from __future__ import annotations

import logging
import pathlib
import sys
import types
import typing
import unittest
from pathlib import Path

import slicer

log = logging.getLogger("slicer_standin")
MODULE_DIR = Path(__file__).resolve().parents[2] / "AutoSegNet"


# ----- slicer.ScriptedLoadableModule ---------------------------------------------------------------------
class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""
        if not hasattr(slicer, "selfTests"):
            slicer.selfTests = {}
        slicer.selfTests[self.moduleName] = self.runTest

    def resourcePath(self, filename):
        return str(Path(self.parent.path).parent / "Resources" / filename)

    def runTest(self, msec=100, **kwargs):
        module = sys.modules[self.__module__]
        test_case = getattr(module, self.moduleName + "Test")()
        test_case.messageDelay = msec
        test_case.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        raise NotImplementedError("Module widgets need Qt, which slicer-core does not have.")


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[:-5]
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is not None:
            return node
        node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        return slicer.mrmlScene.AddNode(node)


class ScriptedLoadableModuleTest(unittest.TestCase):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.moduleTestNames = [m for m in dir(self) if m.startswith("test") and callable(getattr(self, m))]

    def delayDisplay(self, message, requestedDelay=None, msec=None):
        log.info("%s", message)

    def runTest(self):
        for name in self.moduleTestNames:
            self.setUp()
            getattr(self, name)()
            self.tearDown()


# ----- slicer.parameterNodeWrapper -----------------------------------------------------------------------
class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def check(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"{value} is not within [{self.minimum}, {self.maximum}]")


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)

    def check(self, value):
        if value not in self.choices:
            raise ValueError(f"{value!r} is not one of {self.choices}")


def _is_node_type(datatype) -> bool:
    is_union = typing.get_origin(datatype) in (typing.Union, types.UnionType)
    options = typing.get_args(datatype) if is_union else [datatype]
    return all(isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode) for t in options)


def _parse(datatype, text):
    if datatype is bool:
        return text == "true"
    if datatype in (int, float, str):
        return datatype(text)
    if datatype in (pathlib.Path, pathlib.PurePath):
        return datatype(text)
    raise TypeError(f"stand-in parameterNodeWrapper does not support {datatype}")


def _format(datatype, value) -> str:
    return ("true" if value else "false") if datatype is bool else str(value)


def parameterNodeWrapper(cls):
    """Typed properties over a ``vtkMRMLScriptedModuleNode`` (a subset of Slicer's wrapper)."""
    fields = {}
    for name, annotated in typing.get_type_hints(cls, include_extras=True).items():
        datatype, validators = annotated, []
        if typing.get_origin(annotated) is typing.Annotated:
            datatype, *validators = typing.get_args(annotated)
        default = getattr(cls, name, None)
        if default is None and not _is_node_type(datatype):
            default = datatype()
        fields[name] = (datatype, validators, default)
        setattr(cls, name, _property(name, datatype, validators))

    def init(self, parameterNode):
        self.parameterNode = parameterNode
        for name, (datatype, _validators, default) in fields.items():
            if not _is_node_type(datatype) and parameterNode.GetParameter(name) == "":
                parameterNode.SetParameter(name, _format(datatype, default))

    cls.__init__ = init
    cls.allParameters = fields
    return cls


def _property(name, datatype, validators):
    def getter(self):
        if _is_node_type(datatype):
            return self.parameterNode.GetNodeReference(name)
        return _parse(datatype, self.parameterNode.GetParameter(name))

    def setter(self, value):
        if _is_node_type(datatype):
            self.parameterNode.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            return
        for validator in validators:
            validator.check(value)
        self.parameterNode.SetParameter(name, _format(datatype, value))

    return property(getter, setter)


# ----- installation ------------------------------------------------------------------------------------
def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    setattr(slicer, name.rsplit(".", 1)[1], module)
    return module


def register_segmentation_converters() -> None:
    """What Slicer's Segmentations module does at start-up: register the representation converters."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
                 slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule,
                 slicer.vtkClosedSurfaceToFractionalLabelmapConversionRule,
                 slicer.vtkFractionalLabelmapToClosedSurfaceConversionRule):
        factory.RegisterConverterRule(rule())


_installed = False


def install() -> None:
    """Provide the stand-ins (once) and put the module folder on ``sys.path``."""
    global _installed
    if _installed:
        return
    _module("slicer.ScriptedLoadableModule", ScriptedLoadableModule=ScriptedLoadableModule,
            ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
            ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
            ScriptedLoadableModuleTest=ScriptedLoadableModuleTest)
    _module("slicer.parameterNodeWrapper", parameterNodeWrapper=parameterNodeWrapper, WithinRange=WithinRange,
            Choice=Choice)
    _module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
    if not hasattr(slicer, "selfTests"):
        slicer.selfTests = {}
    if getattr(slicer, "mrmlScene", None) is None:
        slicer.mrmlScene = slicer.vtkMRMLScene()
    register_segmentation_converters()
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    _installed = True


def load_module():
    """Import ``AutoSegNet.py`` and instantiate the module class as Slicer does (registers its self-test)."""
    install()
    import AutoSegNet

    parent = types.SimpleNamespace(path=str(MODULE_DIR / "AutoSegNet.py"))
    AutoSegNet.AutoSegNet(parent)
    return AutoSegNet
