"""Raw datasets: dataset.json, case listing, converters and integrity checks."""

from AutoSegNetLib.dataset.dataset_json import CaseFiles, DatasetJson
from AutoSegNetLib.dataset.listing import Case, group_channel_files
from AutoSegNetLib.dataset.raw import DATASET_FOLDER_PATTERN, RawDataset, dataset_folder_name

__all__ = [
    "DATASET_FOLDER_PATTERN",
    "Case",
    "CaseFiles",
    "DatasetJson",
    "RawDataset",
    "dataset_folder_name",
    "group_channel_files",
]
