"""Medical image files through SimpleITK: NIfTI, NRRD, MetaImage."""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio.base import ImageIO, integer_labels, register_io
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
    """Read a file with SimpleITK; an unreadable or truncated file gives an error naming it."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise AutoSegNetError(f"Cannot read image {path}: {reason}") from None
    if str(path).lower().endswith((".nii", ".nii.gz")):
        problem = nifti_truncation(path)
        if problem:
            raise AutoSegNetError(f"Cannot read image {path}: {problem}")
    return image


def nifti_truncation(path: str | Path) -> str | None:
    """Why a NIfTI file is incomplete, or None when it holds all the voxel data its header announces.

    ITK's NIfTI reader silently zero-fills a truncated (half-copied, half-downloaded) file, so this checks
    the size itself: for ``.nii`` the file length; for ``.nii.gz`` the gzip trailer's length field, falling
    back to decompressing the whole stream only when that field disagrees (multi-member gzip files).
    """
    compressed = str(path).lower().endswith(".gz")
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            expected = _nifti_expected_bytes(stream.read(544))
    except (OSError, EOFError, struct.error) as exc:
        return f"NIfTI header unreadable ({exc})"
    if expected is None:
        return None
    if not compressed:
        size = Path(path).stat().st_size
        return None if size >= expected else f"file is truncated ({size} of {expected} bytes)"
    with open(path, "rb") as raw:
        raw.seek(-4, 2)
        if struct.unpack("<I", raw.read(4))[0] == expected % 2**32:
            return None
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(1 << 16):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        return f"compressed file is truncated or corrupt (its header announces {expected} bytes)"
    return None if total >= expected else f"file is truncated ({total} of {expected} bytes)"


def _nifti_layout(header: bytes) -> tuple[str, tuple[int, ...], int, int, int] | None:
    """``(byte order, dims, datatype, bitpix, data offset)`` of a NIfTI-1/2 header, None if not NIfTI."""
    for order in "<>":
        size = struct.unpack(order + "i", header[:4])[0]
        if size == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            datatype, bitpix = struct.unpack(order + "2h", header[70:74])
            offset = max(int(struct.unpack(order + "f", header[108:112])[0]), 352)
            break
        if size == 540:
            datatype, bitpix = struct.unpack(order + "2h", header[12:16])
            dims = struct.unpack(order + "8q", header[16:80])
            offset = max(struct.unpack(order + "q", header[168:176])[0], 544)
            break
    else:
        return None
    if not 0 < dims[0] <= 7:
        return None
    return order, tuple(max(int(d), 1) for d in dims[1:dims[0] + 1]), datatype, bitpix, offset


def _nifti_expected_bytes(header: bytes) -> int | None:
    """Header + voxel bytes a NIfTI-1/2 header announces (None if the header is not recognised)."""
    layout = _nifti_layout(header)
    if layout is None:
        return None
    _, dims, _, bitpix, offset = layout
    return offset + int(np.prod(dims, dtype=np.int64)) * bitpix // 8


_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def nifti_non_finite(path: str | Path) -> tuple[int, int]:
    """``(NaN count, Inf count)`` of the voxels stored in a float NIfTI file; (0, 0) for other types.

    ITK's NIfTI reader turns NaN and Inf into 0, so arrays read through SimpleITK never show them; this reads
    the stored voxels directly (used by ``verify``, which must report what the file holds).
    """
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    with opener(path, "rb") as stream:
        layout = _nifti_layout(stream.read(544))
        if layout is None or layout[2] not in _NIFTI_FLOATS:
            return 0, 0
        order, dims, datatype, _, offset = layout
        stream.seek(offset)
        dtype = np.dtype(order + _NIFTI_FLOATS[datatype])
        voxels = np.frombuffer(stream.read(int(np.prod(dims, dtype=np.int64)) * dtype.itemsize), dtype=dtype)
    return int(np.isnan(voxels).sum()), int(np.isinf(voxels).sum())


def array_3d(image: sitk.Image, path: str | Path) -> np.ndarray:
    """``(Z, Y, X)`` array of a scalar image (2D images get Z == 1)."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise AutoSegNetError(
            f"{path} has {image.GetNumberOfComponentsPerPixel()} components per pixel; store each channel "
            "in its own file (case_0000, case_0001, ...)."
        )
    if image.GetDimension() not in (2, 3):
        raise AutoSegNetError(
            f"{path} is a {image.GetDimension()}D image; expected 2D or 3D. A 4D image holds several channels or "
            "time points: store each in its own file (<case>_0000, <case>_0001, ...), e.g. with `autosegnet "
            "convert msd` for an MSD dataset."
        )
    array = sitk.GetArrayFromImage(image)
    if image.GetDimension() == 2:
        array = array[None]
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
            array = array_3d(image, path)  # first: names the file of a 4D or vector image
            this = geometry_from_sitk(image)
            if geometry is not None and geometry.differences(this):
                raise AutoSegNetError(
                    f"Channels of one case disagree in geometry: {paths[0]} vs {path}: "
                    f"{'; '.join(geometry.differences(this))}."
                )
            geometry = geometry or this
            arrays.append(array)
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise AutoSegNetError(
                f"Channels of one case have different shapes {sorted(shapes)}: {list(map(str, paths))}."
            )
        return np.stack(arrays).astype(np.float32, copy=False), geometry

    def read_seg(self, path: str | Path) -> tuple[np.ndarray, Geometry]:
        image = read_sitk(path)
        array = array_3d(image, path)  # first: names the file of a 4D or vector image
        return integer_labels(array, path), geometry_from_sitk(image)

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
            try:
                sitk.WriteImage(image, str(tmp), useCompression=True)
            except RuntimeError as exc:  # ITK reports a full disk or an unwritable file this way
                reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
                raise AutoSegNetError(f"Cannot write image {path}: {reason}") from None


def smallest_label_dtype(seg: np.ndarray) -> np.dtype:
    """uint8 if all values fit, else uint16, else int32 (labels are never negative in files)."""
    seg = np.asarray(seg)
    if seg.size == 0 or (seg.min() >= 0 and seg.max() < 256):
        return np.dtype(np.uint8)
    if seg.min() >= 0 and seg.max() < 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)
