"""nnU-Net v1 task (``TaskXXX_Name``) -> raw dataset (``DatasetXXX_Name``, nnU-Net v2 layout).

v1 tasks already store one file per channel (``imagesTr/x_0000.nii.gz``) and labels as ``labelsTr/x.nii.gz``;
their ``dataset.json`` has ``modality``, ``labels`` ({"0": "background"}) and ``training``/``test`` lists
whose image paths lack the channel suffix. Files are copied byte for byte; only dataset.json is rewritten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetLib.dataset.convert_common import (
    ConversionResult,
    FilesDone,
    case_name_of,
    copy_file,
    id_and_name_from_task_folder,
    read_legacy_dataset_json,
    require_files,
    run_cases,
    source_file,
    staged_dataset,
    summarise,
    target_folder,
)
from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.dataset.listing import group_channel_files
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import DATASET_JSON_FILE
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)
ENDING = ".nii.gz"


@dataclass(frozen=True)
class CopyJob:
    """Files of one case to copy: ``(source, target)`` pairs."""

    case: str
    pairs: tuple[tuple[Path, Path], ...]

    def __str__(self) -> str:
        return self.case


def copy_case(job: CopyJob) -> FilesDone:
    """Copy the files of one case byte for byte (runs in a worker)."""
    for source, target in job.pairs:
        copy_file(source, target)
    return FilesDone(channels=0, copied=len(job.pairs), written=0)


def convert_nnunet_v1(workspace: Workspace, source: str | Path, dataset_id: int | None = None,
                      name: str | None = None, overwrite: bool = False, num_workers: int = 1,
                      reporter: ProgressReporter | None = None) -> ConversionResult:
    """Convert the nnU-Net v1 task folder ``source`` into ``workspace.raw/DatasetXXX_Name``."""
    source = Path(source).resolve()
    if not (source / DATASET_JSON_FILE).is_file():
        raise AutoSegNetError(f"{source} is not an nnU-Net v1 task folder: it has no dataset.json.")
    dataset_id, name = id_and_name_from_task_folder(source, dataset_id, name)
    legacy = read_legacy_dataset_json(source)
    num_channels = len(legacy.modality)
    train_jobs = [_training_job(source, image, label, num_channels) for image, label in legacy.training]
    require_files([src for job in train_jobs for src, _ in job.pairs], "training files", source / DATASET_JSON_FILE)
    test_groups = group_channel_files(source / "imagesTs", ENDING)
    folder = target_folder(workspace.raw, dataset_id, name, [source], overwrite)
    if reporter is not None:
        reporter.emit("stage", stage="convert", source=str(source), target=str(folder), cases=len(train_jobs))
    with staged_dataset(folder, overwrite) as staging:
        jobs = [CopyJob(j.case, tuple((src, staging / dst) for src, dst in j.pairs)) for j in train_jobs]
        jobs += [CopyJob(case, tuple((p, staging / "imagesTs" / p.name) for _, p in sorted(channels.items())))
                 for case, channels in sorted(test_groups.items())]
        results = run_cases(copy_case, jobs, num_workers, reporter, stage="convert")
        DatasetJson(
            channel_names=dict(legacy.modality), labels=dict(legacy.labels), num_training=len(train_jobs),
            file_ending=ENDING,
            metadata={**legacy.metadata, "converted_by": f"autosegnet convert nnunet-v1 {source}"},
            source=str(folder / DATASET_JSON_FILE),
        ).save(staging / DATASET_JSON_FILE)
        copied, written = summarise(done for _, done in results)
    result = ConversionResult(folder, len(train_jobs), len(test_groups), copied, written)
    log.info("Converted %s -> %s: %d training and %d test cases.", source, folder, len(train_jobs), len(test_groups))
    if reporter is not None:
        reporter.emit("done", **result.to_dict())
    return result


def _training_job(source: Path, image: str, label: str, num_channels: int) -> CopyJob:
    """Channel files ``{case}_{CCCC}.nii.gz`` next to the listed image path, and the label."""
    case = case_name_of(image)
    listed = source_file(source, image)
    pairs = [(listed.parent / f"{case}_{c:04d}{ENDING}", Path("imagesTr") / f"{case}_{c:04d}{ENDING}")
             for c in range(num_channels)]
    pairs.append((source_file(source, label), Path("labelsTr") / f"{case}{ENDING}"))
    return CopyJob(case, tuple(pairs))
