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

    @abc.abstractmethod
    def read_images(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, Geometry]:
        """Read the channel files of one case; returns ``(C, Z, Y, X)`` float32 and their geometry.

        An RGB file contributes 3 channels. All files must share one geometry.
        """

    @abc.abstractmethod
    def read_seg(self, path: str | Path) -> tuple[np.ndarray, Geometry]:
        """Read a label map; returns ``(Z, Y, X)`` in its stored integer type and its geometry."""

    @abc.abstractmethod
    def write_seg(self, seg: np.ndarray, path: str | Path, geometry: Geometry) -> None:
        """Write a ``(Z, Y, X)`` label map (uint8 when values allow, else uint16/int32)."""

    @abc.abstractmethod
    def write_image(self, image: np.ndarray, path: str | Path, geometry: Geometry) -> None:
        """Write one channel ``(Z, Y, X)`` (or RGB ``(3, Z, Y, X)`` where the format supports it)."""


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
    supported = sorted({e for cls in _REGISTRY.values() for e in cls.endings})
    raise AutoSegNetError(f"No image reader for files ending in {ending!r}. Supported endings: {', '.join(supported)}.")


def io_for(path_or_ending: str | Path, override: str | None = None) -> ImageIO:
    """Pick a reader/writer: ``override`` by name if given, else by the file ending."""
    if override:
        return io_by_name(override)
    text = str(path_or_ending)
    return io_for_ending(text if text.startswith(".") and "/" not in text else file_ending(text))
