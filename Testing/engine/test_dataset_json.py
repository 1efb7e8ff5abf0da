"""dataset.json: a typed, validated object whose errors name the file and the field."""

from __future__ import annotations

import copy
import json

import pytest

from AutoSegNetLib.dataset import DatasetJson, RawDataset
from AutoSegNetLib.errors import DatasetFormatError

VALID = {
    "name": "Hippocampus",
    "channel_names": {"0": "MRI"},
    "labels": {"background": 0, "Anterior": 1, "Posterior": 2},
    "numTraining": 208,
    "file_ending": ".nii.gz",
}


def _write(tmp_path, data) -> str:
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(data))
    return str(path)


def _variant(**changes) -> dict:
    data = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is _DROP:
            del data[key]
        else:
            data[key] = value
    return data


_DROP = object()

BROKEN = {
    "channel_names missing": (_variant(channel_names=_DROP), "'channel_names'", "missing"),
    "labels missing": (_variant(labels=_DROP), "'labels'", "missing"),
    "numTraining missing": (_variant(numTraining=_DROP), "'numTraining'", "missing"),
    "file_ending missing": (_variant(file_ending=_DROP), "'file_ending'", "missing"),
    "unknown key with a typo": (_variant(numTrainig=3), "'numTrainig'", "Did you mean 'numTraining'"),
    "channel_names not an object": (_variant(channel_names=["MRI"]), "'channel_names'", "non-empty object"),
    "channel_names empty": (_variant(channel_names={}), "'channel_names'", "non-empty object"),
    "channel index gap": (_variant(channel_names={"0": "T1", "2": "T2"}), "'channel_names'", "channel indices"),
    "channel name empty": (_variant(channel_names={"0": ""}), "'channel_names'", "non-empty name"),
    "labels empty": (_variant(labels={}), "'labels'", "non-empty object"),
    "label value a string": (_variant(labels={"background": 0, "a": "1"}), "'labels'", "'a' must be"),
    "label value negative": (_variant(labels={"background": 0, "a": -1}), "'labels'", "'a' must be"),
    "label value boolean": (_variant(labels={"background": 0, "a": True}), "'labels'", "'a' must be"),
    "no background": (_variant(labels={"a": 1, "b": 2}), "'labels'", "background label (value 0) is missing"),
    "labels not consecutive": (_variant(labels={"background": 0, "a": 1, "b": 3}), "'labels'", "consecutive"),
    "two labels share a value": (_variant(labels={"background": 0, "a": 1, "b": 1}), "'labels'", "share a value"),
    "ignore not the highest": (_variant(labels={"background": 0, "ignore": 1, "a": 2}), "'labels'", "'ignore'"),
    "ignore leaves a gap": (_variant(labels={"background": 0, "a": 1, "ignore": 255}), "'labels'", "'ignore'"),
    "regions without order": (_variant(labels={"background": 0, "whole": [1, 2], "core": [2]}),
                              "'regions_class_order'", "one output value per region"),
    "regions order too short": (_variant(labels={"background": 0, "whole": [1, 2], "core": [2]},
                                         regions_class_order=[1]), "'regions_class_order'", "2 integers"),
    "numTraining negative": (_variant(numTraining=-1), "'numTraining'", "non-negative integer"),
    "numTraining a string": (_variant(numTraining="208"), "'numTraining'", "non-negative integer"),
    "file_ending without dot": (_variant(file_ending="nii.gz"), "'file_ending'", "starting with '.'"),
    "file_ending unsupported": (_variant(file_ending=".xyz"), "'file_ending'", "No image reader"),
    "unknown reader": (_variant(overwrite_image_reader_writer="NibabelIO"), "'overwrite_image_reader_writer'",
                       "unknown reader/writer"),
    "dataset not an object": (_variant(dataset=["a"]), "'dataset'", "must map case names"),
    "dataset case without images": (_variant(dataset={"a": {"label": "labelsTr/a.nii.gz"}}), "'dataset', case 'a'",
                                    "'images' list"),
    "dataset case with unknown key": (_variant(dataset={"a": {"images": ["x"], "mask": "y"}}), "'dataset', case 'a'",
                                      "unknown keys"),
    "dataset label not a path": (_variant(dataset={"a": {"images": ["x"], "label": 3}}), "'dataset', case 'a'",
                                 "'label' must be a file path"),
    "MSD dataset.json": ({"modality": {"0": "MRI"}, "labels": {"0": "background"}, "training": []},
                         "'modality'", "autosegnet convert msd"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_dataset_json_errors_name_the_file_and_the_field(name, tmp_path):
    data, field, message = BROKEN[name]
    source = _write(tmp_path, data)
    with pytest.raises(DatasetFormatError) as caught:
        DatasetJson.load(source)
    text = str(caught.value)
    assert text.startswith(f"{source}: ")
    assert field in text and message in text


def test_top_level_array_is_rejected_with_the_file_named(tmp_path):
    source = _write(tmp_path, [1, 2])
    with pytest.raises(DatasetFormatError, match="expected a JSON object at the top level"):
        DatasetJson.load(source)


def test_a_valid_dataset_json_round_trips_and_keeps_its_metadata(tmp_path):
    dj = DatasetJson.load(_write(tmp_path, VALID))
    assert dj.num_channels == 1 and dj.label_values == [0, 1, 2] and dj.foreground_labels == {"Anterior": 1,
                                                                                               "Posterior": 2}
    assert dj.num_segmentation_heads == 3 and not dj.has_regions and dj.ignore_label is None
    dj.save(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == VALID


def test_regions_and_the_ignore_label_are_understood(tmp_path):
    data = _variant(labels={"background": 0, "whole tumour": [1, 2, 3], "core": [2, 3], "enhancing": [3],
                            "ignore": 4}, regions_class_order=[1, 2, 3], channel_names={"0": "T1", "1": "T2"})
    dj = DatasetJson.load(_write(tmp_path, data))
    assert dj.has_regions and dj.num_segmentation_heads == 3 and dj.ignore_label == 4
    assert dj.label_values == [0, 1, 2, 3, 4] and dj.num_channels == 2


def test_channel_names_are_put_in_index_order(tmp_path):
    dj = DatasetJson.load(_write(tmp_path, _variant(channel_names={"1": "T2", "0": "T1"})))
    assert list(dj.channel_names.items()) == [("0", "T1"), ("1", "T2")]


def test_explicit_dataset_file_lists_resolve_relative_to_the_dataset_folder(tmp_path):
    data = _variant(numTraining=1, dataset={"a": {"images": ["img/a_t1.nii.gz", "/abs/a_t2.nii.gz"],
                                                  "label": "seg/a.nii.gz"}},
                    channel_names={"0": "T1", "1": "T2"})
    _write(tmp_path, data)
    (case,) = RawDataset.open(tmp_path).training_cases()
    assert case.name == "a"
    assert case.images == ((tmp_path / "img/a_t1.nii.gz").resolve(), (tmp_path / "/abs/a_t2.nii.gz"))
    assert case.label == (tmp_path / "seg/a.nii.gz").resolve()


def test_raw_dataset_skips_hidden_resource_fork_files(tmp_path):
    _write(tmp_path, VALID)
    (tmp_path / "imagesTr").mkdir()
    for name in ("a_0000.nii.gz", "._a_0000.nii.gz", "b_0000.nii.gz"):
        (tmp_path / "imagesTr" / name).touch()
    assert [c.name for c in RawDataset.open(tmp_path).training_cases()] == ["a", "b"]
