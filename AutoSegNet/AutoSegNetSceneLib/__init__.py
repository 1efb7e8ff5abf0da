"""Scene glue of the AutoSegNet Slicer module: everything that touches MRML, in small files.

The modules here use only MRML classes (they run under the real MRML of the ``slicer-core`` wheel in CI)
and the engine package ``AutoSegNetLib``; they never import Qt. Import them lazily from ``AutoSegNet.py``:
some pull in the engine's dependencies (SimpleITK, psutil), which may not be installed yet when Slicer
loads the module.

- :mod:`.volumes`: volume nodes <-> ``(Z, Y, X)`` arrays + the engine's ``Geometry`` (RAS <-> LPS);
- :mod:`.labels`: label names <-> integer values, stable across cases and rounds, and their colours;
- :mod:`.cases`: which volume + segmentation/labelmap pairs are training cases (remembered in the scene);
- :mod:`.staging`, :mod:`.label_layers`, :mod:`.staging_job`: the GUI-thread half of an export, in short steps;
- :mod:`.export`: scene -> nnU-Net v2 raw dataset (incremental; the engine's ``import-staged`` writes it);
- :mod:`.import_prediction`: prediction arrays/files -> segmentation node (+ uncertainty volume);
- :mod:`.commands`: the engine command lines; :mod:`.process`: launching and stopping engine processes;
  :mod:`.jobs`, :mod:`.job_chain`, :mod:`.job_state`: following them; :mod:`.workflow`: the loop as one object;
- :mod:`.models`: trained/installed models and their versions; :mod:`.curves`: training curves as a plot;
- :mod:`.install`: installing the Python dependencies inside Slicer.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def ensure_engine_importable() -> None:
    """Make ``import AutoSegNetLib`` work when the module runs from a source checkout.

    In an installed extension the engine sits beside this package (both in ``qt-scripted-modules``). When
    Slicer loads the module from the source tree (``--additional-module-paths <repo>/AutoSegNet``), the engine
    is one folder up, in the repository root, which is then added to ``sys.path``.
    """
    if importlib.util.find_spec("AutoSegNetLib") is not None:
        return
    repo_root = Path(__file__).resolve().parents[2]
    if (repo_root / "AutoSegNetLib" / "__init__.py").is_file():
        sys.path.insert(0, str(repo_root))


ensure_engine_importable()
