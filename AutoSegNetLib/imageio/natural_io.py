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
from AutoSegNetLib.imageio.base import ImageIO, integer_labels, register_io
from AutoSegNetLib.imageio.geometry import PSEUDO_2D_SPACING, Geometry
from AutoSegNetLib.imageio.sitk_io import smallest_label_dtype
from AutoSegNetLib.utils.atomic import atomic_path

NATURAL_2D_GEOMETRY = Geometry((PSEUDO_2D_SPACING, 1.0, 1.0), image_dim=2)


def read_natural(path: str | Path, as_label: bool = False) -> np.ndarray:
    """Pixels of a 2D image as ``(C, Y, X)`` in their stored type.

    Palette images give their indices when read ``as_label`` (class ids, as in VOC-style label PNGs) and
    their colours otherwise: one grey channel for a grey palette, else RGB (RGBA with transparency).
    """
    try:
        with Image.open(path) as img:
            img.seek(0)
            array = np.asarray(_decoded(img, as_label))
    except (OSError, ValueError, SyntaxError) as exc:
        raise AutoSegNetError(f"Cannot read image {path}: {exc}") from None
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return np.moveaxis(array, -1, 0)
    raise AutoSegNetError(f"{path} has pixel array shape {array.shape}; expected a 2D grey or colour image.")


def _decoded(img: Image.Image, as_label: bool) -> Image.Image:
    """The image in a mode NumPy understands (see :func:`read_natural` for palettes)."""
    if img.mode in ("P", "PA"):
        if as_label:
            return img.convert("P") if img.mode == "PA" else img
        palette = np.asarray(img.getpalette() or [0, 0, 0]).reshape(-1, 3)
        if "transparency" not in img.info and (palette == palette[:, :1]).all():
            return img.convert("L")
        return img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
    if img.mode in ("1", "L", "I", "I;16", "I;16B", "F", "RGB", "RGBA", "LA"):
        return img
    return img.convert("RGB")


@register_io
class NaturalImage2DIO(ImageIO):
    """PNG/BMP/TIFF/GIF/JPEG 2D images. Arrays are ``(C, 1, Y, X)``; labels ``(1, Y, X)``."""

    name = "NaturalImage2DIO"
    endings = (".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg")
    multi_channel_files = True

    def read_images(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, Geometry]:
        channels = [read_natural(p) for p in paths]
        shapes = {c.shape[1:] for c in channels}
        if len(shapes) != 1:
            raise AutoSegNetError(
                f"Channels of one case have different sizes {sorted(shapes)}: {list(map(str, paths))}."
            )
        stacked = np.concatenate(channels).astype(np.float32, copy=False)
        return stacked[:, None], NATURAL_2D_GEOMETRY

    def read_seg(self, path: str | Path) -> tuple[np.ndarray, Geometry]:
        pixels = read_natural(path, as_label=True)
        if pixels.shape[0] > 1:
            colour = pixels[:3]
            if not (np.array_equal(colour[0], colour[1]) and np.array_equal(colour[0], colour[2])):
                raise AutoSegNetError(
                    f"Label file {path} is a colour image with different R, G and B values; save label maps as "
                    "single-channel (grey or palette) images with one integer per class."
                )
            pixels = pixels[:1]
        return integer_labels(pixels, path), NATURAL_2D_GEOMETRY

    def write_seg(self, seg: np.ndarray, path: str | Path, geometry: Geometry) -> None:
        if Path(path).suffix.lower() in (".jpg", ".jpeg"):
            raise AutoSegNetError(f"{path}: JPEG is lossy and would change label values; store labels as PNG.")
        seg = np.asarray(seg)
        self._write(seg.reshape(seg.shape[-2:]).astype(smallest_label_dtype(seg), copy=False), path)

    def write_image(self, image: np.ndarray, path: str | Path, geometry: Geometry) -> None:
        """Write ``(Z, Y, X)`` with Z == 1, or RGB(A) ``(3|4, 1, Y, X)``, as one file.

        Float arrays (as :meth:`read_images` returns them) are stored as uint8/uint16 when that is lossless;
        other floats only as single-channel TIFF.
        """
        image = np.asarray(image)
        if image.ndim == 4 and image.shape[0] in (3, 4):
            pixels = np.moveaxis(image[:, 0], 0, -1)
        else:
            pixels = image.reshape(image.shape[-2:])
        self._write(_storable(pixels, path), path)

    def _write(self, array: np.ndarray, path: str | Path) -> None:
        if array.dtype == np.uint16 and Path(path).suffix.lower() not in (".png", ".tif", ".tiff"):
            raise AutoSegNetError(f"{path}: 16-bit values can only be stored as PNG or TIFF.")
        with atomic_path(path) as tmp:
            Image.fromarray(array).save(tmp, format=_pil_format(path))


def _storable(pixels: np.ndarray, path: str | Path) -> np.ndarray:
    """``pixels`` (Y, X) or (Y, X, C) in a type the file format holds without changing any value."""
    if pixels.dtype.kind in "ub" and pixels.dtype.itemsize == 1:
        return pixels
    finite = bool(np.isfinite(pixels).all()) if pixels.dtype.kind == "f" else True
    whole = finite and bool((np.floor(pixels) == pixels).all()) if pixels.dtype.kind == "f" else True
    low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    if whole and low >= 0 and high <= 255:
        return pixels.astype(np.uint8)
    if whole and low >= 0 and high <= 65535 and pixels.ndim == 2:
        return pixels.astype(np.uint16)
    if pixels.ndim == 2 and Path(path).suffix.lower() in (".tif", ".tiff"):
        return pixels.astype(np.float32)
    raise AutoSegNetError(
        f"{path}: values in [{low:g}, {high:g}] ({pixels.dtype}, {'colour' if pixels.ndim == 3 else 'grey'}) "
        "cannot be stored in this format without loss; use a single-channel .tif or a NIfTI/NRRD file."
    )


def _pil_format(path: str | Path) -> str:
    ending = Path(path).suffix.lower()
    return {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF", ".jpg": "JPEG",
            ".jpeg": "JPEG"}[ending]
