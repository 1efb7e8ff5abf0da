"""Label names <-> values: stable across cases and rounds; colours distinct and stable."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from AutoSegNetSceneLib.labels import LabelTable, label_color

from AutoSegNetLib.errors import AutoSegNetError


def test_new_names_get_the_next_values_and_known_names_keep_theirs():
    table = LabelTable()
    assert table.add_names(["liver", "kidney"]) == ["liver", "kidney"]
    assert table.add_names(["kidney", " spleen ", "liver"]) == ["spleen"]
    assert table.as_dict() == {"liver": 1, "kidney": 2, "spleen": 3}


def test_rename_keeps_the_value_and_remove_renumbers_and_ignores_the_name():
    table = LabelTable({"liver": 1, "kidney": 2, "spleen": 3})
    table.rename("kidney", "kidneys")
    assert table.as_dict() == {"liver": 1, "kidneys": 2, "spleen": 3}
    table.remove("liver")
    assert table.as_dict() == {"kidneys": 1, "spleen": 2}
    assert table.add_names(["liver"]) == []
    table.restore("liver")
    assert table.as_dict() == {"kidneys": 1, "spleen": 2, "liver": 3}


def test_the_table_survives_a_json_round_trip():
    table = LabelTable({"a": 2, "b": 1}, ignored=["c"])
    again = LabelTable.from_json(table.to_json())
    assert again.as_dict() == {"b": 1, "a": 2} and again.ignored == ["c"]
    assert again.dataset_labels() == {"background": 0, "b": 1, "a": 2}


@pytest.mark.parametrize(("values", "message"), [({"a": 1, "b": 3}, "without gaps"), ({"background": 1}, "label 0")])
def test_inconsistent_tables_are_refused(values, message):
    with pytest.raises(AutoSegNetError, match=message):
        LabelTable(values)


@pytest.mark.parametrize("name", ["", "background"])
def test_unusable_segment_names_are_refused(name):
    with pytest.raises(AutoSegNetError):
        LabelTable().add_names([name])


def test_twenty_label_colours_are_pairwise_distinct_and_stable():
    colors = np.array([label_color(v) for v in range(1, 21)])
    distances = [np.linalg.norm(a - b) for a, b in itertools.combinations(colors, 2)]
    assert min(distances) > 0.1
    assert label_color(3) == label_color(3)
    assert np.all((colors >= 0) & (colors <= 1))
