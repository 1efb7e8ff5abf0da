"""Training curves (loss and per-class pseudo-Dice per epoch) as a Slicer table + plot chart.

The widget shows the chart with the Plots module; the nodes are plain MRML, so they are saved with the scene.
"""

from __future__ import annotations

import slicer
import vtk

from AutoSegNetSceneLib.labels import label_color

CHART_NAME = "AutoSegNet training"
LOSS_COLUMNS = ("train_loss", "val_loss")


def curve_columns(history: list[dict], label_names: dict[int, str] | None = None) -> dict[str, list[float]]:
    """``{column: values per epoch}`` from the engine's ``epoch`` events.

    ``pseudo_dice`` is a ``{label name: Dice}`` dict (a list is read as foreground labels 1, 2, ... named by
    ``label_names``); missing values are NaN so that all columns have one value per epoch.
    """
    label_names = label_names or {}
    columns: dict[str, list[float]] = {"epoch": []}
    for row, event in enumerate(history):
        columns["epoch"].append(float(event.get("epoch", row)))
        values = {key: event.get(key) for key in LOSS_COLUMNS}
        dice = event.get("pseudo_dice")
        items = dice.items() if isinstance(dice, dict) else enumerate(dice or [], start=1)
        for key, value in items:
            name = label_names.get(int(key), str(key)) if str(key).isdigit() else str(key)
            values[f"Dice {name}"] = value
        for key, value in values.items():
            if value is None and key not in columns:
                continue
            column = columns.setdefault(key, [float("nan")] * row)
            column.append(float(value) if isinstance(value, (int, float)) else float("nan"))
        for column in columns.values():
            column.extend([float("nan")] * (row + 1 - len(column)))
    return columns


def update_training_chart(scene: slicer.vtkMRMLScene, history: list[dict],
                          label_names: dict[int, str] | None = None) -> slicer.vtkMRMLPlotChartNode:
    """Create or refresh the table, one plot series per curve and the chart; returns the chart node."""
    columns = curve_columns(history, label_names)
    table_node = _singleton(scene, "vtkMRMLTableNode", f"{CHART_NAME} table")
    table = vtk.vtkTable()
    for name, values in columns.items():
        array = vtk.vtkDoubleArray()
        array.SetName(name)
        for value in values:
            array.InsertNextValue(value)
        table.AddColumn(array)
    table_node.SetAndObserveTable(table)
    chart = _singleton(scene, "vtkMRMLPlotChartNode", CHART_NAME)
    chart.SetTitle("Training: loss and pseudo-Dice per epoch")
    chart.SetXAxisTitle("epoch")
    chart.SetYAxisTitle("loss / Dice")
    chart.RemoveAllPlotSeriesNodeIDs()
    for index, name in enumerate(c for c in columns if c != "epoch"):
        series = _singleton(scene, "vtkMRMLPlotSeriesNode", f"{CHART_NAME}: {name}")
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName("epoch")
        series.SetYColumnName(name)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        series.SetColor(*(label_color(index + 1) if name.startswith("Dice") else (0.2, 0.2, 0.2)))
        if name == "val_loss":
            series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleDash)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def _singleton(scene: slicer.vtkMRMLScene, class_name: str, name: str):
    node = scene.GetFirstNodeByName(name)
    if node is None or not node.IsA(class_name):
        node = scene.AddNewNodeByClass(class_name, name)
    return node
