"""Image reading and writing: arrays ``(C, Z, Y, X)`` plus a :class:`Geometry`, chosen by file ending.

Registered readers/writers: ``SimpleITKIO`` (NIfTI, NRRD, MetaImage) and ``NaturalImage2DIO``
(PNG, BMP, TIFF, GIF, JPEG). Pick one with :func:`io_for` (by ending or by name).
"""

from AutoSegNetLib.imageio import natural_io, sitk_io  # noqa: F401  (registers the readers)
from AutoSegNetLib.imageio.base import (
    ImageIO,
    file_ending,
    io_by_name,
    io_for,
    io_for_ending,
    register_io,
    registered_ios,
    supported_endings,
)
from AutoSegNetLib.imageio.geometry import IDENTITY_DIRECTION, PSEUDO_2D_SPACING, Geometry

__all__ = [
    "IDENTITY_DIRECTION",
    "PSEUDO_2D_SPACING",
    "Geometry",
    "ImageIO",
    "file_ending",
    "io_by_name",
    "io_for",
    "io_for_ending",
    "register_io",
    "registered_ios",
    "supported_endings",
]
