"""The oldest Slicer the module supports, checked before anything that older Slicers cannot even import.

Slicer 5.8 runs Python 3.9, whose typing cannot express the module's parameter node (``A | B | None``), so the
check runs first and says what to do instead of failing with a TypeError. Kept Python 3.9-compatible.
"""

from __future__ import annotations

MINIMUM = (5, 10)


def require_slicer(app, minimum: tuple = MINIMUM) -> None:
    """Raise RuntimeError when ``app`` (``slicer.app``) is a Slicer older than ``minimum``.

    An ``app`` without version attributes (tests outside the application) passes.
    """
    version = (getattr(app, "majorVersion", None), getattr(app, "minorVersion", None))
    if None in version or tuple(version) >= tuple(minimum):
        return
    raise RuntimeError(
        "AutoSegNet needs 3D Slicer {}.{} or later; this is Slicer {}.{}. Install the current Slicer from "
        "https://download.slicer.org and add AutoSegNet from its Extensions Manager.".format(*minimum, *version))
