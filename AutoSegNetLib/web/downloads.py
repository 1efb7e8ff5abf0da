"""Files the page offers for download: the shown segmentation as a label map, and a model zip.

Both are written into ``<workspace>/downloads/`` (served read-only to the page under :data:`ROUTE`), each through
a temporary file renamed into place, so a half-written file is never offered.
"""

from __future__ import annotations

import re
from pathlib import Path

from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.cases import TrainingCase
from AutoSegNetSceneLib.label_layers import label_array
from AutoSegNetSceneLib.labels import LabelTable

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import file_ending, io_for, supported_endings
from AutoSegNetLib.utils.atomic import atomic_path

#: The URL path under which the page reaches ``<workspace>/downloads``.
ROUTE = "asn_downloads"
FORMATS = {"nifti": ".nii.gz", "nrrd": ".nrrd"}


def downloads_folder(workspace_root: Path) -> Path:
    folder = Path(workspace_root) / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def safe_name(name: str) -> str:
    """A file name made of letters, digits, ``-``, ``_`` and ``.`` only (volume names may hold anything)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "segmentation"


def image_stem(name: str) -> str:
    """A volume name without an image file ending the engine reads (trame-slicer names volumes after their
    files)."""
    ending = file_ending(name)
    if ending in supported_endings() and len(name) > len(ending):
        return name[: -len(ending)]
    return name


def write_segmentation(training_set, volume, segmentation_node, workspace_root: Path, file_format: str) -> Path:
    """The segmentation as a label map on ``volume``'s grid (segment *i* in order has value *i*; later segments win
    where they overlap), written as NIfTI or NRRD; returns the file. The label names are the segment names."""
    if file_format not in FORMATS:
        raise AutoSegNetError(f"Unknown download format {file_format!r}; choose one of {', '.join(FORMATS)}.")
    names = training_set.segment_names(segmentation_node)
    if not names:
        raise AutoSegNetError("The segmentation has no segment to download; add or paint one first.")
    if len({n.strip().lower() for n in names}) != len(names):
        raise AutoSegNetError(f"Segment names must differ to become labels, got {names}; rename the duplicates.")
    table = LabelTable({name: value for value, name in enumerate(names, start=1)})
    case = TrainingCase(name="download", volumes=[volume], label_node=segmentation_node, status="new")
    array, _ = label_array(training_set, case, table)
    ending = FORMATS[file_format]
    target = downloads_folder(workspace_root) / f"{safe_name(image_stem(volume.GetName()))}_segmentation{ending}"
    with atomic_path(target, suffix=ending) as temporary:
        io_for(ending).write_seg(array, temporary, volumes.volume_geometry(volume))
    return target
