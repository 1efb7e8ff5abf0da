"""A folder of images + a folder of label files with matching names -> raw dataset.

Matching: a file ``{case}{image_suffix}{ending}`` in the images folder pairs with ``{case}{label_suffix}{ending}``
in the labels folder (endings may differ: ``21_training.tif`` + ``21_manual1.gif`` with the suffixes
``_training`` / ``_manual1``). Both folders may be the same folder when the suffixes tell images from labels.

Values: ``label_map`` renumbers label values (``{255: 1}`` for 0/255 masks); the values in the converted
labels must then be consecutive from 0. ``label_names`` names them in value order, ``channel_names`` names
the image channels.

Storage (nnU-Net's convention for natural images): a 2D colour image stays
**one** file ``{case}_0000.png`` holding R, G and B; dataset.json then has three ``channel_names``
("R", "G", "B" by default) and readers return 3 channels for that one file. Medical images (NIfTI, NRRD,
MHA) hold one channel per file. Files whose ending can be kept are copied byte for byte; GIF, JPEG and BMP
are stored as PNG, ``.nhdr``/``.mhd`` as ``.nrrd``/``.mha`` (or choose ``ending``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from AutoSegNetLib.dataset.convert_common import (
    REENCODED_ENDING,
    SITK_ENDINGS,
    ConversionResult,
    compact_dtype,
    copy_file,
    dataset_ending,
    run_cases,
    split_sitk_channels,
    staged_dataset,
    target_folder,
)
from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import file_ending, io_for, registered_ios
from AutoSegNetLib.imageio.natural_io import NATURAL_2D_GEOMETRY, read_natural
from AutoSegNetLib.layout import DATASET_JSON_FILE
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)
DEFAULT_CHANNEL_NAMES = {3: ["R", "G", "B"], 4: ["R", "G", "B", "A"]}


@dataclass(frozen=True)
class FolderCaseJob:
    """One case: its image (one file, possibly RGB or 4D) and label, the target folders and the value map."""

    case: str
    image: Path
    label: Path | None
    images_dir: Path
    labels_dir: Path | None
    ending: str
    label_map: tuple[tuple[int, int], ...] = ()

    def __str__(self) -> str:
        return self.case


@dataclass(frozen=True)
class FolderCaseResult:
    """What one case contributed: channel count, label values (after mapping) and file counts."""

    channels: int
    label_values: tuple[int, ...]
    copied: int
    written: int


def convert_folder_case(job: FolderCaseJob) -> FolderCaseResult:
    """Store one case's image channels and its (renumbered) label in the dataset layout (runs in a worker)."""
    channels, copied, written = store_image(job.image, job.images_dir, job.case, job.ending)
    values: tuple[int, ...] = ()
    if job.label is not None and job.labels_dir is not None:
        values, label_copied = store_label(job.label, job.labels_dir / f"{job.case}{job.ending}", dict(job.label_map))
        copied, written = copied + label_copied, written + (not label_copied)
    return FolderCaseResult(channels, values, copied, written)


def store_image(source: Path, folder: Path, case: str, ending: str) -> tuple[int, int, int]:
    """Write ``source``'s channels as ``folder/{case}_{CCCC}{ending}``; returns (channels, copied, written).

    Medical formats get one file per channel; a natural image stays one file (grey or RGB(A)).
    """
    def target(channel: int) -> Path:
        return folder / f"{case}_{channel:04d}{ending}"

    source_sitk, target_sitk = file_ending(source) in SITK_ENDINGS, ending in SITK_ENDINGS
    if source_sitk and target_sitk:
        done = split_sitk_channels(source, target)
        return done.channels, done.copied, done.written
    if not source_sitk:
        pixels = read_natural(source)[:, None]  # (C, 1, Y, X) in the stored type, palettes as colours
        if not target_sitk:
            if file_ending(source) == ending and ending not in REENCODED_ENDING:
                copy_file(source, target(0))
                return pixels.shape[0], 1, 0
            if pixels.shape[0] not in (1, 3, 4):
                raise AutoSegNetError(f"{source}: {pixels.shape[0]} channels cannot be stored in one {ending} file.")
            io_for(ending).write_image(pixels if pixels.shape[0] > 1 else pixels[0], target(0), NATURAL_2D_GEOMETRY)
            return pixels.shape[0], 0, 1
    image, geometry = io_for(source).read_images([source])
    image = compact_dtype(image)
    writer = io_for(ending)
    if target_sitk:
        for channel in range(image.shape[0]):
            writer.write_image(image[channel], target(channel), geometry)
        return image.shape[0], 0, image.shape[0]
    writer.write_image(image if image.shape[0] > 1 else image[0], target(0), geometry)
    return image.shape[0], 0, 1


def store_label(source: Path, target: Path, label_map: Mapping[int, int]) -> tuple[tuple[int, ...], bool]:
    """Write the label file renumbered by ``label_map``; returns (values present, copied byte for byte)."""
    seg, geometry = io_for(source).read_seg(source)
    mapped = apply_label_map(seg, label_map)
    values = tuple(int(v) for v in np.unique(mapped))
    same_ending = file_ending(source) == file_ending(target) and file_ending(target) not in REENCODED_ENDING
    if same_ending and not label_map:
        copy_file(source, target)
        return values, True
    io_for(target).write_seg(mapped, target, geometry)
    return values, False


def apply_label_map(seg: np.ndarray, label_map: Mapping[int, int]) -> np.ndarray:
    """``seg`` with every value ``a`` in ``label_map`` replaced by ``label_map[a]`` (others unchanged)."""
    if not label_map:
        return seg
    out = seg.astype(np.int64 if max(label_map.values()) > np.iinfo(seg.dtype).max else seg.dtype, copy=True)
    for old, new in label_map.items():
        out[seg == old] = new
    return out


# ----- matching -------------------------------------------------------------------------------------
def list_cases(folder: Path, suffix: str, exclude: set[Path] | None = None) -> dict[str, Path]:
    """``{case: file}`` for image files ``{case}{suffix}{ending}`` in ``folder`` (hidden files skipped)."""
    if not folder.is_dir():
        raise AutoSegNetError(f"{folder} is not a folder.")
    supported = {e for cls in registered_ios().values() for e in cls.endings}
    cases: dict[str, Path] = {}
    skipped = []
    for path in sorted(folder.iterdir()):
        ending = file_ending(path)
        if path.name.startswith(".") or not path.is_file() or ending not in supported or path in (exclude or ()):
            continue
        stem = path.name[: -len(ending)]
        if suffix and not stem.endswith(suffix):
            skipped.append(path.name)
            continue
        case = stem[: len(stem) - len(suffix)]
        if case in cases:
            raise AutoSegNetError(f"{folder} holds two files for case {case!r}: {cases[case].name} and {path.name}.")
        cases[case] = path
    if skipped:
        log.warning("%d image files in %s do not end in %r and are left out: %s", len(skipped), folder, suffix,
                    ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else ""))
    return cases


def match_cases(images: Path, labels: Path, image_suffix: str, label_suffix: str,
                ignore_unmatched: bool) -> list[tuple[str, Path, Path]]:
    """``(case, image, label)`` for every case found in both folders, sorted by case."""
    label_files = list_cases(labels, label_suffix)
    image_files = list_cases(images, image_suffix, exclude=set(label_files.values()))
    if not image_files:
        raise AutoSegNetError(f"No image files{_suffix_note(image_suffix)} in {images}.")
    only_images = sorted(set(image_files) - set(label_files))
    only_labels = sorted(set(label_files) - set(image_files))
    if only_images or only_labels:
        message = (f"Images and labels do not pair up: {_listing(only_images)} in {images} have no label"
                   f"{_suffix_note(label_suffix)} in {labels}; {_listing(only_labels)} in {labels} have no image. ")
        if not ignore_unmatched:
            raise AutoSegNetError(message + "Use --image-suffix / --label-suffix to match names that differ by a "
                                  "suffix (e.g. 21_training.tif and 21_manual1.gif), or --ignore-unmatched.")
        log.warning("%sThey are left out (--ignore-unmatched).", message)
    cases = sorted(set(image_files) & set(label_files))
    if not cases:
        raise AutoSegNetError(f"No image in {images} has a label in {labels}.")
    return [(c, image_files[c], label_files[c]) for c in cases]


def _suffix_note(suffix: str) -> str:
    return f" ending in {suffix!r}" if suffix else ""


def _listing(names: Sequence[str]) -> str:
    if not names:
        return "no cases"
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return f"{len(names)} cases ({shown})"


# ----- entry point ----------------------------------------------------------------------------------
def convert_folders(workspace: Workspace, images: str | Path, labels: str | Path, name: str, dataset_id: int, *,
                    channel_names: Sequence[str] | None = None, label_names: Sequence[str] | None = None,
                    label_map: Mapping[int, int] | None = None, ending: str | None = None,
                    image_suffix: str = "", label_suffix: str = "", test_images: str | Path | None = None,
                    test_image_suffix: str | None = None, ignore_unmatched: bool = False, overwrite: bool = False,
                    num_workers: int = 1, reporter: ProgressReporter | None = None) -> ConversionResult:
    """Convert an images folder + labels folder into ``workspace.raw/DatasetXXX_Name`` (see module doc)."""
    images, labels = Path(images).resolve(), Path(labels).resolve()
    test_folder = Path(test_images).resolve() if test_images else None
    pairs = match_cases(images, labels, image_suffix, label_suffix, ignore_unmatched)
    ending = _checked_ending(ending or dataset_ending(file_ending(pairs[0][1])))
    suffix = image_suffix if test_image_suffix is None else test_image_suffix
    tests = sorted(list_cases(test_folder, suffix).items()) if test_folder else []
    if test_folder and not tests:
        raise AutoSegNetError(f"No test images{_suffix_note(suffix)} in {test_folder}; set --test-image-suffix.")
    sources = [images, labels] + ([test_folder] if test_folder else [])
    folder = target_folder(workspace.raw, dataset_id, name, sources, overwrite)
    mapping = tuple(sorted((int(k), int(v)) for k, v in (label_map or {}).items()))
    if reporter is not None:
        reporter.emit("stage", stage="convert", source=str(images), target=str(folder), cases=len(pairs))
    with staged_dataset(folder, overwrite) as staging:
        jobs = [FolderCaseJob(c, img, lab, staging / "imagesTr", staging / "labelsTr", ending, mapping)
                for c, img, lab in pairs]
        jobs += [FolderCaseJob(c, img, None, staging / "imagesTs", None, ending) for c, img in tests]
        results = run_cases(convert_folder_case, jobs, num_workers, reporter, stage="convert")
        num_channels = _common_channel_count(results)
        found = sorted({v for job, r in results if job.label is not None for v in r.label_values})
        DatasetJson(
            channel_names=_channel_names(channel_names, num_channels),
            labels=_labels(label_names, found, mapping),
            num_training=len(pairs), file_ending=ending,
            metadata={"name": name, "converted_by": f"autosegnet convert folders --images {images} --labels {labels}"},
            source=str(folder / DATASET_JSON_FILE),
        ).save(staging / DATASET_JSON_FILE)
        copied = sum(r.copied for _, r in results)
        written = sum(r.written for _, r in results)
    result = ConversionResult(folder, len(pairs), len(tests), copied, written)
    log.info("Converted %s + %s -> %s: %d training and %d test cases.", images, labels, folder, len(pairs), len(tests))
    if reporter is not None:
        reporter.emit("done", **result.to_dict())
    return result


def _checked_ending(ending: str) -> str:
    ending = ending if ending.startswith(".") else f".{ending}"
    io_for(ending)  # raises for endings no reader handles
    if ending in (".jpg", ".jpeg"):
        raise AutoSegNetError("JPEG is lossy and cannot store label maps; choose --ending .png.")
    return ending


def _common_channel_count(results: list[tuple[FolderCaseJob, FolderCaseResult]]) -> int:
    counts: dict[int, list[str]] = {}
    for job, result in results:
        counts.setdefault(result.channels, []).append(job.case)
    if len(counts) > 1:
        detail = "; ".join(f"{n} channels: {_listing(sorted(cases))}" for n, cases in sorted(counts.items()))
        raise AutoSegNetError(f"Images have different numbers of channels ({detail}); convert them separately "
                              "or make them consistent (e.g. all RGB).")
    return next(iter(counts))


def _channel_names(given: Sequence[str] | None, num_channels: int) -> dict[str, str]:
    if given:
        if len(given) != num_channels:
            raise AutoSegNetError(f"--channel-names gives {len(given)} names ({', '.join(given)}) but the images have "
                                  f"{num_channels} channels.")
        names = list(given)
    else:
        names = DEFAULT_CHANNEL_NAMES.get(num_channels, ["image"] if num_channels == 1 else
                                          [f"channel{i}" for i in range(num_channels)])
    return {str(i): n for i, n in enumerate(names)}


def _labels(given: Sequence[str] | None, found: list[int], mapping: tuple[tuple[int, int], ...]) -> dict[str, int]:
    """``{name: value}`` from ``--label-names`` (value order) or defaults; values must be consecutive."""
    if given:
        outside = [v for v in found if not 0 <= v < len(given)]
        if outside:
            raise AutoSegNetError(
                f"The labels hold the values {found} (after --map-labels), but --label-names names only the values "
                f"0..{len(given) - 1}; map {outside} onto those with --map-labels OLD=NEW, or name more labels."
            )
        if len(set(given)) != len(given):
            raise AutoSegNetError(f"--label-names repeats a name: {', '.join(given)}.")
        return {n: i for i, n in enumerate(given)}
    run = 0
    while run in found:
        run += 1
    if run != len(found):
        outside = [v for v in found if v >= run or v < 0]
        suggestion = ",".join([f"{a}={b}" for a, b in mapping] + [f"{v}={run + i}" for i, v in enumerate(outside)])
        raise AutoSegNetError(
            f"The labels hold the values {found} (after --map-labels), which are not consecutive from 0 (background); "
            f"renumber them, e.g. --map-labels {suggestion}, and name them with --label-names."
        )
    return {("background" if v == 0 else f"label_{v}"): v for v in found}
