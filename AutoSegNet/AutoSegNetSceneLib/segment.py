"""Files around a background prediction: write the input volumes, find and import what the engine wrote.

The input volumes (one per channel, channel 0 first, all on one grid) are written as
``<folder>/input/<case>_<CCCC>.nii.gz`` in LPS; the engine writes ``<folder>/output/<case>.nii.gz`` in the
same geometry, plus ``<case>*uncertainty*`` / ``<case>*probabilit*`` files when asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import io_for
from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.import_prediction import import_scalar_volume, import_segmentation, read_on_volume_grid

CASE = "slicer_input"
ENDING = ".nii.gz"


@dataclass(frozen=True)
class PredictionFolders:
    root: Path

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def segmentation(self) -> Path:
        return self.output / f"{CASE}{ENDING}"

    def extra_output(self, word: str) -> Path | None:
        """The first output file of the case whose name contains ``word`` (e.g. ``uncertainty``)."""
        matches = sorted(p for p in self.output.glob(f"{CASE}*") if word in p.name and p.name.endswith(ENDING))
        return matches[0] if matches else None


def write_prediction_input(channel_volumes: list, folders: PredictionFolders) -> list[Path]:
    """Write the channel volumes as the engine's input files; returns their paths."""
    if not channel_volumes or any(v is None for v in channel_volumes):
        raise AutoSegNetError("Select the input volume (one per channel) to segment.")
    geometry = volumes.volume_geometry(channel_volumes[0])
    shape = volumes.dimensions_zyx(channel_volumes[0])
    io = io_for(ENDING)
    paths = []
    for channel, volume in enumerate(channel_volumes):
        volumes.require_untransformed(volume)
        if volumes.dimensions_zyx(volume) != shape or geometry.differences(volumes.volume_geometry(volume)):
            raise AutoSegNetError(f"Channel {channel} volume {volume.GetName()!r} is not on the grid of channel 0; "
                                  "resample it onto the first channel before segmenting.")
        path = folders.input / f"{CASE}_{channel:04d}{ENDING}"
        io.write_image(np.array(volumes.volume_array(volume)), path, geometry)
        paths.append(path)
    folders.output.mkdir(parents=True, exist_ok=True)
    return paths


def import_prediction_output(scene, folders: PredictionFolders, reference_volume, names: dict[int, str],
                             node_name: str | None = None, segmentation_node=None) -> dict:
    """Import the engine's output files: ``{"segmentation": node, "uncertainty": node or None}``."""
    if not folders.segmentation.is_file():
        raise AutoSegNetError(f"The prediction did not produce {folders.segmentation}; see the job's engine.log.")
    label_map = read_on_volume_grid(folders.segmentation, reference_volume)
    result = {"segmentation": import_segmentation(scene, label_map, names, reference_volume, node_name,
                                                  segmentation_node)}
    uncertainty = folders.extra_output("uncertainty")
    result["uncertainty"] = None
    if uncertainty is not None:
        array = read_on_volume_grid(uncertainty, reference_volume, "uncertainty map", labels=False)
        result["uncertainty"] = import_scalar_volume(
            scene, array.astype(np.float32), reference_volume, f"{reference_volume.GetName()} uncertainty")
    return result
