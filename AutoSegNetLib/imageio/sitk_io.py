"""Medical image files through SimpleITK: NIfTI, NRRD, MetaImage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio.base import ImageIO, register_io
from AutoSegNetLib.imageio.geometry import PSEUDO_2D_SPACING, Geometry
from AutoSegNetLib.utils.atomic import atomic_path


def geometry_from_sitk(image: sitk.Image) -> Geometry:
    """Geometry of a 2D or 3D SimpleITK image (2D is promoted to a single slice)."""
    dim = image.GetDimension()
    if dim == 3:
        return Geometry(tuple(reversed(image.GetSpacing())), image.GetOrigin(), image.GetDirection())
    if dim == 2:
        sx, sy = image.GetSpacing()
        ox, oy = image.GetOrigin()
        d = image.GetDirection()
        direction = (d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0)
        return Geometry((PSEUDO_2D_SPACING, sy, sx), (ox, oy, 0.0), direction, image_dim=2)
    raise AutoSegNetError(f"Only 2D and 3D images have a single geometry; this image has {dim} dimensions.")


def apply_geometry(image: sitk.Image, geometry: Geometry) -> sitk.Image:
    """Set spacing, origin and direction of a SimpleITK image of matching dimension (in place)."""
    if image.GetDimension() == 2:
        image.SetSpacing(tuple(reversed(geometry.spacing[1:])))
        image.SetOrigin(geometry.origin[:2])
        d = geometry.direction
        image.SetDirection((d[0], d[1], d[3], d[4]))
    else:
        image.SetSpacing(tuple(reversed(geometry.spacing)))
        image.SetOrigin(geometry.origin)
        image.SetDirection(geometry.direction)
    return image


def read_sitk(path: str | Path) -> sitk.Image:
    """Read a file with SimpleITK; an unreadable file gives an error naming it."""
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise AutoSegNetError(f"Cannot read image {path}: {reason}") from None


def array_3d(image: sitk.Image, path: str | Path) -> np.ndarray:
    """``(Z, Y, X)`` array of a scalar image (2D images get Z == 1)."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise AutoSegNetError(
            f"{path} has {image.GetNumberOfComponentsPerPixel()} components per pixel; store each channel "
            "in its own file (case_0000, case_0001, ...)."
        )
    array = sitk.GetArrayFromImage(image)
    if image.GetDimension() == 2:
        array = array[None]
    elif image.GetDimension() != 3:
        raise AutoSegNetError(
            f"{path} is a {image.GetDimension()}D image; expected 2D or 3D. Split 4D multi-channel images "
            "with `autosegnet convert msd`."
        )
    return array


@register_io
class SimpleITKIO(ImageIO):
    """NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) and MetaImage (.mha, .mhd) via SimpleITK."""

    name = "SimpleITKIO"
    endings = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

    def read_images(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, Geometry]:
        arrays, geometry = [], None
        for path in paths:
            image = read_sitk(path)
            this = geometry_from_sitk(image)
            if geometry is not None and geometry.differences(this):
                raise AutoSegNetError(
                    f"Channels of one case disagree in geometry: {paths[0]} vs {path}: "
                    f"{'; '.join(geometry.differences(this))}."
                )
            geometry = geometry or this
            arrays.append(array_3d(image, path))
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise AutoSegNetError(f"Channels of one case have different shapes {sorted(shapes)}: {list(map(str, paths))}.")
        return np.stack(arrays).astype(np.float32, copy=False), geometry

    def read_seg(self, path: str | Path) -> tuple[np.ndarray, Geometry]:
        image = read_sitk(path)
        return array_3d(image, path), geometry_from_sitk(image)

    def write_seg(self, seg: np.ndarray, path: str | Path, geometry: Geometry) -> None:
        self._write(np.asarray(seg).astype(smallest_label_dtype(seg), copy=False), path, geometry)

    def write_image(self, image: np.ndarray, path: str | Path, geometry: Geometry) -> None:
        self._write(np.asarray(image), path, geometry)

    def _write(self, array: np.ndarray, path: str | Path, geometry: Geometry) -> None:
        if array.ndim != 3:
            raise ValueError(f"Expected a (Z, Y, X) array, got shape {array.shape}.")
        if geometry.is_2d:
            array = array[0]
        image = apply_geometry(sitk.GetImageFromArray(array), geometry)
        with atomic_path(path) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)


def smallest_label_dtype(seg: np.ndarray) -> np.dtype:
    """uint8 if all values fit, else uint16, else int32 (labels are never negative in files)."""
    seg = np.asarray(seg)
    if seg.size == 0 or (seg.min() >= 0 and seg.max() < 256):
        return np.dtype(np.uint8)
    if seg.min() >= 0 and seg.max() < 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)
