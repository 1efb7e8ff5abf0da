"""Static checks of the module's .ui against AutoSegNet.py and its panel (no Qt needed).

- every ``self.ui.<name>`` the code uses exists in the .ui, and every button in the .ui is used;
- every widget class is a Qt, CTK or Slicer class, custom ones declared with their header;
- every ``SlicerParameterName`` names a parameter of ``AutoSegNetParameterNode`` and sits on a widget class that
  Slicer's parameterNodeWrapper can connect to that parameter's type (the connectors in
  ``Base/Python/slicer/parameterNodeWrapper/guiConnectors.py`` compare the exact widget type);
- every MRML widget receives the scene from the top-level widget's ``mrmlSceneChanged`` signal.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = REPO_ROOT / "AutoSegNet" / "AutoSegNet.py"
PANEL = REPO_ROOT / "AutoSegNet" / "AutoSegNetPanelLib" / "panel.py"
UI = REPO_ROOT / "AutoSegNet" / "Resources" / "UI" / "AutoSegNet.ui"
WIDGET_CLASS = re.compile(r"^(Q[A-Z]\w*|ctk[A-Z]\w*|qMRML[A-Z]\w*|qSlicer[A-Z]\w*)$")
MRML_WIDGETS = {"qMRMLNodeComboBox", "qMRMLCheckableNodeComboBox", "qMRMLSubjectHierarchyTreeView",
                "qMRMLSegmentSelectorWidget", "qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget"}
# parameter type -> widget classes Slicer's GUI connectors accept (exact type match there)
CONNECTABLE = {
    "bool": {"QCheckBox", "ctkCheckBox", "QPushButton", "ctkCheckablePushButton"},
    "int": {"QSpinBox", "QSlider", "QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider",
            "ctkDoubleSpinBox", "qMRMLSpinBox"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox",
              "qMRMLSpinBox"},
    "str": {"QLineEdit", "QLabel", "QTextEdit"},
    "choice": {"QComboBox", "ctkComboBox"},
    "Path": {"ctkPathLineEdit", "ctkDirectoryButton"},
    "node": {"qMRMLNodeComboBox"},
}


def ui_tree() -> ET.Element:
    return ET.parse(UI).getroot()


def ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ui_tree().iter("widget")}


def widget_property(widget: ET.Element, name: str) -> ET.Element | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop
    return None


def ui_names_used_in_code() -> set[str]:
    names = set()
    for path in (MODULE, PANEL):
        names |= {node.attr for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Attribute)
                  and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                  and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    return names


def parameter_fields() -> dict[str, str]:
    """``{field: kind}`` of ``AutoSegNetParameterNode`` (kind as in :data:`CONNECTABLE`)."""
    tree = ast.parse(MODULE.read_text())
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "AutoSegNetParameterNode"]
    fields = {}
    for item in cls.body:
        if isinstance(item, ast.AnnAssign):
            text = ast.unparse(item.annotation)
            base = re.sub(r"^Annotated\[(\w+),.*\]$", r"\1", text)
            if "Choice(" in text:
                fields[item.target.id] = "choice"
            elif "vtkMRML" in base:
                fields[item.target.id] = "node"
            else:
                fields[item.target.id] = base
    return fields


def test_the_ui_is_a_qmrml_widget_named_after_the_module():
    root = ui_tree()
    assert root.findtext("class") == "AutoSegNet"
    top = root.find("widget")
    assert (top.get("class"), top.get("name")) == ("qMRMLWidget", "AutoSegNet")


def test_every_ui_name_the_code_uses_exists_in_the_ui():
    assert sorted(ui_names_used_in_code() - set(ui_widgets())) == []


def test_every_button_in_the_ui_is_wired_in_the_code():
    buttons = {name for name, w in ui_widgets().items() if w.get("class") == "QPushButton"}
    assert sorted(buttons - ui_names_used_in_code()) == []


def test_widget_names_are_unique():
    names = [w.get("name") for w in ui_tree().iter("widget")]
    assert len(names) == len(set(names))


def test_every_widget_class_is_a_qt_ctk_or_slicer_class_and_custom_ones_are_declared():
    classes = {w.get("class") for w in ui_tree().iter("widget")}
    assert sorted(c for c in classes if not WIDGET_CLASS.match(c)) == []
    declared = {c.findtext("class"): c.findtext("header") for c in ui_tree().iter("customwidget")}
    custom = {c for c in classes if not c.startswith("Q")}
    assert sorted(custom - set(declared)) == []
    assert all(header == f"{name}.h" for name, header in declared.items())


@pytest.mark.parametrize("name", sorted(n for n, w in ui_widgets().items()
                                        if widget_property(w, "SlicerParameterName") is not None))
def test_each_parameter_binding_names_a_field_on_a_widget_that_can_show_it(name):
    widget = ui_widgets()[name]
    parameter = widget_property(widget, "SlicerParameterName").findtext("string")
    fields = parameter_fields()
    assert parameter in fields, f"{name}: no parameter {parameter!r} in AutoSegNetParameterNode"
    assert widget.get("class") in CONNECTABLE[fields[parameter]], (name, widget.get("class"), fields[parameter])


def test_every_parameter_is_bound_to_exactly_one_widget():
    bound = [widget_property(w, "SlicerParameterName").findtext("string") for w in ui_widgets().values()
             if widget_property(w, "SlicerParameterName") is not None]
    assert sorted(bound) == sorted(parameter_fields())


def test_node_selectors_offer_the_node_types_of_their_parameter():
    source = MODULE.read_text()
    for name, widget in ui_widgets().items():
        binding = widget_property(widget, "SlicerParameterName")
        if widget.get("class") != "qMRMLNodeComboBox" or binding is None:
            continue
        annotation = re.search(rf"^\s+{binding.findtext('string')}: (.+)$", source, re.M).group(1)
        offered = {s.text for s in widget_property(widget, "nodeTypes").iter("string")}
        assert offered == set(re.findall(r"vtkMRML\w+", annotation)), name


def test_every_mrml_widget_gets_the_scene_from_the_module_widget():
    connected = {c.findtext("receiver") for c in ui_tree().iter("connection")
                 if c.findtext("sender") == "AutoSegNet" and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    mrml = {name for name, w in ui_widgets().items() if w.get("class") in MRML_WIDGETS}
    assert mrml and sorted(mrml - connected) == []
