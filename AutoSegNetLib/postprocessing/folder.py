"""Apply ``postprocessing.json`` rules to a folder of label maps (``autosegnet postprocess apply``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation.evaluate import common_ending, label_map_files
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.inference.outputs import write_segmentation
from AutoSegNetLib.postprocessing.rules import apply_postprocessing, check_rules


def apply_to_folder(input_folder: str | Path, output_folder: str | Path, rules: dict[str, Any],
                    ending: str | None = None) -> list[Path]:
    """Apply ``rules`` to every label map in ``input_folder`` and write them (same names, same geometry) to
    ``output_folder``; stored probabilities and uncertainty maps are not copied."""
    check_rules(rules)
    input_folder, output_folder = Path(input_folder), Path(output_folder)
    if not input_folder.is_dir():
        raise AutoSegNetError(f"Input folder {input_folder} does not exist.")
    ending = ending or common_ending(input_folder)
    written = []
    for case, path in label_map_files(input_folder, ending):
        io = io_for(path)
        segmentation, geometry = io.read_seg(path)
        written.append(write_segmentation(output_folder, case, apply_postprocessing(segmentation, rules), geometry,
                                          ending, io))
    return written
