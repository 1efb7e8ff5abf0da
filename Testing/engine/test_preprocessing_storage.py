"""On-disk format of preprocessed cases: what training reads back."""

from __future__ import annotations

import numpy as np
import pytest

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.preprocessing.storage import PreprocessedDataset, link_case, remove_case, save_case


def a_case():
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    seg = (np.arange(3 * 4 * 5).reshape(1, 3, 4, 5) % 3 - 1).astype(np.int16)
    locations = {"1": [[0, 0, 0, 2], [0, 1, 1, 1]], "2": np.zeros((0, 4), int), "3": np.array([[0, 2, 3, 4]])}
    return data, seg, {"configuration": "3d_fullres", "class_locations": locations}


def test_a_saved_case_loads_back_memory_mapped_with_its_locations(tmp_path):
    data, seg, props = a_case()
    save_case(tmp_path, "case_1", data, seg, props)
    loaded_data, loaded_seg, loaded = PreprocessedDataset(tmp_path).load_case("case_1")
    assert isinstance(loaded_data, np.memmap) and isinstance(loaded_seg, np.memmap)
    np.testing.assert_array_equal(loaded_data, data)
    np.testing.assert_array_equal(loaded_seg, seg)
    assert loaded["configuration"] == "3d_fullres"
    assert {k: v.tolist() for k, v in loaded["class_locations"].items()} == {
        "1": [[0, 0, 0, 2], [0, 1, 1, 1]], "2": [], "3": [[0, 2, 3, 4]]}
    assert loaded["class_locations"]["1"].dtype == np.int32
    assert "class_locations" in props  # the caller's dict is not modified


def test_loading_without_mmap_gives_plain_arrays(tmp_path):
    data, seg, props = a_case()
    save_case(tmp_path, "c", data, seg, props)
    loaded_data, _, loaded = PreprocessedDataset(tmp_path).load_case("c", mmap=False)
    assert type(loaded_data) is np.ndarray and type(loaded["class_locations"]["1"]) is np.ndarray


def test_a_case_without_label_has_no_seg_and_no_locations(tmp_path):
    data, _, _ = a_case()
    save_case(tmp_path, "img", data, None, {"configuration": "2d"})
    _, seg, props = PreprocessedDataset(tmp_path).load_case("img")
    assert seg is None and "class_locations" not in props


def test_only_complete_cases_are_listed(tmp_path):
    data, seg, props = a_case()
    save_case(tmp_path, "b", data, seg, props)
    save_case(tmp_path, "a", data, seg, props)
    np.save(tmp_path / "half_written.npy", data)  # no properties file: not complete
    (tmp_path / ".preprocessing_state.json").write_text("{}")
    assert PreprocessedDataset(tmp_path).case_names == ["a", "b"]


def test_linked_case_shares_the_arrays_and_has_its_own_properties(tmp_path):
    data, seg, props = a_case()
    save_case(tmp_path / "x", "c", data, seg, props)
    link_case(tmp_path / "x", tmp_path / "y", "c", {"configuration": "2d"})
    _, _, loaded = PreprocessedDataset(tmp_path / "y").load_case("c")
    assert loaded["configuration"] == "2d" and loaded["class_locations"]["3"].tolist() == [[0, 2, 3, 4]]
    assert (tmp_path / "x" / "c.npy").stat().st_ino == (tmp_path / "y" / "c.npy").stat().st_ino


def test_a_removed_case_leaves_no_file(tmp_path):
    data, seg, props = a_case()
    save_case(tmp_path, "c", data, seg, props)
    remove_case(tmp_path, "c")
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_and_missing_case_say_what_to_do(tmp_path):
    with pytest.raises(AutoSegNetError, match="Run `autosegnet preprocess`"):
        PreprocessedDataset(tmp_path / "nothing")
    with pytest.raises(AutoSegNetError, match="'c' not found"):
        PreprocessedDataset(tmp_path).load_case("c")
