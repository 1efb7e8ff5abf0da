"""Training curves as a table, plot series and a chart (real MRML nodes)."""

from __future__ import annotations

import math

from AutoSegNetSceneLib.curves import CHART_NAME, curve_columns, update_training_chart

HISTORY = [
    {"event": "epoch", "epoch": 1, "train_loss": 1.0, "val_loss": 1.2, "pseudo_dice": {"ball": 0.1, "box": 0.0}},
    {"event": "epoch", "epoch": 2, "train_loss": 0.5, "val_loss": 0.9, "pseudo_dice": {"ball": 0.4}},
]


def test_columns_have_one_value_per_epoch_with_nan_where_missing():
    columns = curve_columns(HISTORY)
    assert list(columns) == ["epoch", "train_loss", "val_loss", "Dice ball", "Dice box"]
    assert columns["epoch"] == [1.0, 2.0] and columns["train_loss"] == [1.0, 0.5]
    assert columns["Dice box"][0] == 0.0 and math.isnan(columns["Dice box"][1])


def test_list_dice_is_named_by_label_value():
    columns = curve_columns([{"epoch": 1, "pseudo_dice": [0.3, 0.6]}], {1: "ball", 2: "box"})
    assert columns["Dice ball"] == [0.3] and columns["Dice box"] == [0.6]


def test_the_chart_shows_one_series_per_curve_and_is_updated_in_place(a_scene):
    chart = update_training_chart(a_scene, HISTORY[:1])
    chart = update_training_chart(a_scene, HISTORY)
    assert chart.GetName() == CHART_NAME and chart.GetNumberOfPlotSeriesNodes() == 4
    table = a_scene.GetFirstNodeByName(f"{CHART_NAME} table").GetTable()
    assert table.GetNumberOfRows() == 2 and table.GetColumnByName("Dice ball").GetValue(1) == 0.4
    assert a_scene.GetNodesByClass("vtkMRMLPlotChartNode").GetNumberOfItems() == 1
    assert a_scene.GetNodesByClass("vtkMRMLPlotSeriesNode").GetNumberOfItems() == 4
