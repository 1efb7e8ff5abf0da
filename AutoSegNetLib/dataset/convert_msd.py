"""Medical Segmentation Decathlon layout -> raw dataset (nnU-Net v2 layout).

MSD: ``TaskXX_Name/dataset.json`` with ``modality`` ({"0": "MRI"}), ``labels`` ({"0": "background", ...}),
``training`` ([{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]) and ``test``; images
hold all channels in one file (4D for multi-channel tasks, channels on the 4th axis). The converted dataset
has one file per channel (``x_0000.nii.gz``, ``x_0001.nii.gz``, ...). Single-channel images and all labels
are copied byte for byte; ``imagesTs/`` is optional.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetLib.dataset.convert_common import (
    ConversionResult,
    FilesDone,
    case_name_of,
    copy_label,
    id_and_name_from_task_folder,
    read_legacy_dataset_json,
    require_files,
    run_cases,
    source_file,
    split_sitk_channels,
    staged_dataset,
    summarise,
    target_folder,
)
from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import DATASET_JSON_FILE
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)
ENDING = ".nii.gz"


@dataclass(frozen=True)
class MsdCaseJob:
    """One case to convert: its MSD image (all channels) and label, and where the results go."""

    case: str
    image: Path
    label: Path | None
    images_dir: Path
    labels_dir: Path | None

    def __str__(self) -> str:
        return self.case


def convert_msd_case(job: MsdCaseJob) -> FilesDone:
    """Split/copy the channels of one case and copy its label (runs in a worker)."""
    done = split_sitk_channels(job.image, lambda c: job.images_dir / f"{job.case}_{c:04d}{ENDING}")
    if job.label is None or job.labels_dir is None:
        return done
    label = copy_label(job.label, job.labels_dir / f"{job.case}{ENDING}")
    return FilesDone(done.channels, done.copied + label.copied, done.written + label.written)


def convert_msd(workspace: Workspace, source: str | Path, dataset_id: int | None = None, name: str | None = None,
                overwrite: bool = False, num_workers: int = 1,
                reporter: ProgressReporter | None = None) -> ConversionResult:
    """Convert the MSD task folder ``source`` into ``workspace.raw/DatasetXXX_Name``.

    The ID and name default to those in the folder name ``TaskXX_Name``. The source is only read.
    """
    source = Path(source).resolve()
    if not (source / DATASET_JSON_FILE).is_file():
        raise AutoSegNetError(f"{source} is not an MSD task folder: it has no dataset.json.")
    dataset_id, name = id_and_name_from_task_folder(source, dataset_id, name)
    legacy = read_legacy_dataset_json(source)
    training = [(case_name_of(img), source_file(source, img), source_file(source, lab)) for img, lab in legacy.training]
    _check_unique([c for c, _, _ in training], source)
    require_files([p for _, img, lab in training for p in (img, lab)], "training files", source / DATASET_JSON_FILE)
    _warn_unlisted(source / "imagesTr", {img for _, img, _ in training})
    test = _test_images(source, legacy.test)
    folder = target_folder(workspace.raw, dataset_id, name, [source], overwrite)
    if reporter is not None:
        reporter.emit("stage", stage="convert", source=str(source), target=str(folder), cases=len(training))
    with staged_dataset(folder, overwrite) as staging:
        jobs = [MsdCaseJob(c, img, lab, staging / "imagesTr", staging / "labelsTr") for c, img, lab in training]
        jobs += [MsdCaseJob(case_name_of(img), img, None, staging / "imagesTs", None) for img in test]
        results = run_cases(convert_msd_case, jobs, num_workers, reporter, stage="convert")
        _check_channel_counts(results, len(legacy.modality), source)
        DatasetJson(
            channel_names=dict(legacy.modality), labels=dict(legacy.labels), num_training=len(training),
            file_ending=ENDING,
            metadata={**legacy.metadata, "converted_by": f"autosegnet convert msd {source}"},
            source=str(folder / DATASET_JSON_FILE),
        ).save(staging / DATASET_JSON_FILE)
        (staging / "labelsTr").mkdir(exist_ok=True)
        copied, written = summarise(done for _, done in results)
    result = ConversionResult(folder, len(training), len(test), copied, written)
    log.info("Converted %s -> %s: %d training and %d test cases (%d files copied, %d written).",
             source, folder, len(training), len(test), copied, written)
    if reporter is not None:
        reporter.emit("done", **result.to_dict())
    return result


def _test_images(source: Path, listed: list[str] | None) -> list[Path]:
    """Test images: those listed in dataset.json that exist, else whatever ``imagesTs/`` holds."""
    folder = source / "imagesTs"
    if listed:
        paths = [source_file(source, p) for p in listed]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            log.warning("%d of the %d test images listed in %s are absent; converting the %d present.",
                        len(missing), len(paths), source / DATASET_JSON_FILE, len(paths) - len(missing))
        return [p for p in paths if p.is_file()]
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(ENDING) and not p.name.startswith("."))


def _warn_unlisted(folder: Path, listed: set[Path]) -> None:
    if not folder.is_dir():
        return
    unlisted = sorted(p.name for p in folder.iterdir()
                      if p.name.endswith(ENDING) and not p.name.startswith(".") and p.resolve() not in listed)
    if unlisted:
        log.warning("%d images in %s are not listed in dataset.json's 'training' and are left out: %s",
                    len(unlisted), folder, ", ".join(unlisted[:10]))


def _check_unique(cases: list[str], source: Path) -> None:
    seen, twice = set(), set()
    for case in cases:
        (twice if case in seen else seen).add(case)
    if twice:
        raise AutoSegNetError(f"{source / DATASET_JSON_FILE} lists cases more than once: {sorted(twice)}.")


def _check_channel_counts(results: list[tuple[MsdCaseJob, FilesDone]], expected: int, source: Path) -> None:
    wrong = sorted(f"{job.case} ({done.channels})" for job, done in results if done.channels != expected)
    if wrong:
        shown = ", ".join(wrong[:10]) + (f" and {len(wrong) - 10} more" if len(wrong) > 10 else "")
        raise AutoSegNetError(
            f"{source / DATASET_JSON_FILE} declares {expected} modalities, but these images hold another number of "
            f"channels: {shown}. Fix the 'modality' field or the images."
        )
