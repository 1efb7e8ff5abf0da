"""The reader/writer interface and its registry, chosen by file ending or by name."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError, unknown_name_error
from AutoSegNetLib.imageio.geometry import Geometry


class ImageIO(abc.ABC):
    """Reads images as ``(C, Z, Y, X)`` float32 and label maps as ``(Z, Y, X)`` integers, and writes both."""

    name: str = ""
    endings: tuple[str, ...] = ()
    #: True when one file may hold several channels (RGB natural images); else one channel per file.
    multi_channel_files: bool = False

    @abc.abstractmethod
    def read_images(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, Geometry]:
        """Read the channel files of one case; returns ``(C, Z, Y, X)`` float32 and their geometry.

        An RGB file contributes 3 channels. All files must share one geometry.
        """

    @abc.abstractmethod
    def read_seg(self, path: str | Path) -> tuple[np.ndarray, Geometry]:
        """Read a label map; returns ``(Z, Y, X)`` integers and its geometry.

        Integer files keep their stored type; float files holding whole numbers are cast to the smallest
        integer type; others raise :class:`NonIntegerLabelError`.
        """

    @abc.abstractmethod
    def write_seg(self, seg: np.ndarray, path: str | Path, geometry: Geometry) -> None:
        """Write a ``(Z, Y, X)`` label map (uint8 when values allow, else uint16/int32)."""

    @abc.abstractmethod
    def write_image(self, image: np.ndarray, path: str | Path, geometry: Geometry) -> None:
        """Write one channel ``(Z, Y, X)`` (or RGB ``(3, Z, Y, X)`` where the format supports it)."""


class NonIntegerLabelError(AutoSegNetError):
    """A label file holds values that are not whole numbers (e.g. an interpolated or probability map)."""

    def __init__(self, path: str | Path, values: Sequence[float]) -> None:
        self.path = str(path)
        self.values = [float(v) for v in values]
        shown = ", ".join(f"{v:g}" for v in self.values[:5]) + (", ..." if len(self.values) > 5 else "")
        super().__init__(
            f"Label file {path} holds non-integer values ({shown}); label maps must store one whole number per "
            "class. Re-export it without interpolation (nearest neighbour) or round it."
        )


def integer_labels(array: np.ndarray, path: str | Path) -> np.ndarray:
    """A label array as integers: integer types pass through, float arrays must hold whole numbers only.

    Raises :class:`NonIntegerLabelError` naming ``path`` otherwise. Floats are cast to the smallest
    integer type that holds them (label files are often stored as float32 by other tools).
    """
    array = np.asarray(array)
    if array.dtype.kind in "iu":
        return array
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    finite = np.isfinite(array)
    fractional = ~finite | (np.floor(array) != array)
    if fractional.any():
        raise NonIntegerLabelError(path, np.unique(array[fractional])[:20])
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    for dtype in (np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return array.astype(dtype)
    return array.astype(np.int64)


def file_ending(path: str | Path) -> str:
    """The ending that selects a reader: ``.nii.gz`` for ``a.nii.gz``, ``.png`` for ``a.png``."""
    name = Path(path).name.lower()
    for double in (".nii.gz", ".ome.tif", ".ome.tiff"):
        if name.endswith(double):
            return double
    return Path(name).suffix


_REGISTRY: dict[str, type[ImageIO]] = {}


def register_io(cls: type[ImageIO]) -> type[ImageIO]:
    """Class decorator adding a reader/writer to the registry under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def registered_ios() -> dict[str, type[ImageIO]]:
    """All registered readers/writers by name."""
    return dict(_REGISTRY)


def io_by_name(name: str) -> ImageIO:
    """The reader/writer called ``name`` (as in dataset.json's ``overwrite_image_reader_writer``)."""
    if name not in _REGISTRY:
        raise unknown_name_error("image reader/writer", name, _REGISTRY)
    return _REGISTRY[name]()


def io_for_ending(ending: str) -> ImageIO:
    """The first registered reader/writer that handles files ending in ``ending``."""
    ending = ending.lower()
    for cls in _REGISTRY.values():
        if ending in cls.endings:
            return cls()
    raise AutoSegNetError(f"No image reader for files ending in {ending!r}. Supported endings: "
                          f"{', '.join(supported_endings())}.")


def supported_endings() -> list[str]:
    """Every file ending a registered reader/writer handles (``.nii.gz``, ``.nrrd``, ``.png``, ...), sorted."""
    return sorted({e for cls in _REGISTRY.values() for e in cls.endings})


def io_for(path_or_ending: str | Path, override: str | None = None) -> ImageIO:
    """Pick a reader/writer: ``override`` by name if given, else by the file ending."""
    if override:
        return io_by_name(override)
    text = str(path_or_ending)
    return io_for_ending(text if text.startswith(".") and "/" not in text else file_ending(text))
