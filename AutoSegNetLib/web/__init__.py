"""``autosegnet web``: the annotate-correct-retrain loop in a browser, on trame-slicer over the module's scene glue.

Needs its own environment (see docs/decisions/0021-web-ui-dependencies.md): ``trame-slicer[standalone]==2.0.0``
pins ``slicer-core`` 5.11. Import :mod:`.app` and :mod:`.ui` only after :func:`ensure_scene_glue_importable`.

- :mod:`.app`: :class:`~.app.WebSession`, one trame-slicer scene + one :class:`Workflow` over it;
- :mod:`.ui`: state, handlers and the job timer; :mod:`.panel`: the layout beside trame-slicer's editor;
- :mod:`.curves`: loss and Dice charts as SVG points; :mod:`.downloads`: segmentation files and model zips.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError

#: The Slicer module's folder in a source checkout (``<repo>/AutoSegNet``), which holds ``AutoSegNetSceneLib``.
MODULE_FOLDER = Path(__file__).resolve().parents[2] / "AutoSegNet"


def ensure_scene_glue_importable() -> None:
    """Make ``import AutoSegNetSceneLib`` work, as the Slicer module's tests do (its folder on ``sys.path``).

    An environment that already provides the package is left alone; in a source checkout the repository's
    ``AutoSegNet`` folder is added. Raises :class:`AutoSegNetError` when neither has it (e.g. an installed wheel,
    which does not ship the scene glue yet).
    """
    if importlib.util.find_spec("AutoSegNetSceneLib") is not None:
        return
    if (MODULE_FOLDER / "AutoSegNetSceneLib" / "__init__.py").is_file():
        sys.path.insert(0, str(MODULE_FOLDER))
        return
    raise AutoSegNetError(f"autosegnet web needs the Slicer module's scene glue (AutoSegNetSceneLib), which is not "
                          f"importable and not at {MODULE_FOLDER}. Run it from a source checkout of AutoSegNet "
                          "(pip install -e '.[test]' there).")
