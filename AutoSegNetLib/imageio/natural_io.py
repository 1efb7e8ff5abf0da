"""2D natural images (PNG, BMP, TIFF, GIF, JPEG) through Pillow; RGB(A) images give 3 (4) channels.

They have no physical geometry: spacing is 1 mm in-plane and the pseudo-2D 999 out of plane, origin 0,
identity direction. Label files must be single-channel (grey, palette, or RGB with equal channels).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio.base import ImageIO, register_io
from AutoSegNetLib.imageio.geometry import PSEUDO_2D_SPACING, Geometry
from AutoSegNetLib.imageio.sitk_io import smallest_label_dtype
from AutoSegNetLib.utils.atomic import atomic_path

NATURAL_2D_GEOMETRY = Geometry((PSEUDO_2D_SPACING, 1.0, 1.0), image_dim=2)


def read_natural(path: str | Path) -> np.ndarray:
    """Pixels of a 2D image as ``(C, Y, X)`` in their stored type (palette images give the indices)."""
    try:
        with Image.open(path) as img:
            img.seek(0)
            if img.mode in ("P", "PA"):
                array = np.asarray(img.convert("P")) if img.mode == "PA" else np.asarray(img)
            elif img.mode in ("1", "L", "I", "I;16", "I;16B", "F", "RGB", "RGBA", "LA"):
                array = np.asarray(img)
            else:
                array = np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise AutoSegNetError(f"Cannot read image {path}: {exc}") from None
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return np.moveaxis(array, -1, 0)
    raise AutoSegNetError(f"{path} has pixel array shape {array.shape}; expected a 2D grey or colour image.")


@register_io
class NaturalImage2DIO(ImageIO):
    """PNG/BMP/TIFF/GIF/JPEG 2D images. Arrays are ``(C, 1, Y, X)``; labels ``(1, Y, X)``."""

    name = "NaturalImage2DIO"
    endings = (".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg")

    def read_images(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, Geometry]:
        channels = [read_natural(p) for p in paths]
        shapes = {c.shape[1:] for c in channels}
        if len(shapes) != 1:
            raise AutoSegNetError(f"Channels of one case have different sizes {sorted(shapes)}: {list(map(str, paths))}.")
        stacked = np.concatenate(channels).astype(np.float32, copy=False)
        return stacked[:, None], NATURAL_2D_GEOMETRY

    def read_seg(self, path: str | Path) -> tuple[np.ndarray, Geometry]:
        pixels = read_natural(path)
        if pixels.shape[0] > 1:
            colour = pixels[:3]
            if not (np.array_equal(colour[0], colour[1]) and np.array_equal(colour[0], colour[2])):
                raise AutoSegNetError(
                    f"Label file {path} is a colour image with different R, G and B values; save label maps as "
                    "single-channel (grey or palette) images with one integer per class."
                )
            pixels = pixels[:1]
        return pixels, NATURAL_2D_GEOMETRY

    def write_seg(self, seg: np.ndarray, path: str | Path, geometry: Geometry) -> None:
        seg = np.asarray(seg)
        self._write(seg.reshape(seg.shape[-2:]).astype(smallest_label_dtype(seg), copy=False), path)

    def write_image(self, image: np.ndarray, path: str | Path, geometry: Geometry) -> None:
        image = np.asarray(image)
        if image.ndim == 4 and image.shape[0] in (3, 4):
            self._write(np.moveaxis(image[:, 0], 0, -1), path)
        else:
            self._write(image.reshape(image.shape[-2:]), path)

    def _write(self, array: np.ndarray, path: str | Path) -> None:
        if array.dtype == np.uint16 and Path(path).suffix.lower() not in (".png", ".tif", ".tiff"):
            raise AutoSegNetError(f"{path}: 16-bit values can only be stored as PNG or TIFF.")
        with atomic_path(path) as tmp:
            Image.fromarray(array).save(tmp, format=_pil_format(path))


def _pil_format(path: str | Path) -> str:
    ending = Path(path).suffix.lower()
    return {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF", ".jpg": "JPEG",
            ".jpeg": "JPEG"}[ending]
