"""nnU-Net's data augmentation, built from batchgenerators transforms, and the patch geometry it needs.

Pipeline and probabilities (per sample) as in nnU-Net v2: rotation (p 0.2) and scaling 0.7-1.4 (p 0.2), no
elastic deformation; Gaussian noise (p 0.1), Gaussian blur (p 0.2), multiplicative brightness (p 0.15),
contrast (p 0.15), low-resolution simulation (p 0.25), inverted gamma (p 0.1), gamma (p 0.3), mirroring along
every axis. 3D patches that are much thinner along the first axis ("dummy 2D", ratio > 3) get in-plane
rotation/scaling only: the batch is reshaped to 2D slices for the spatial transform and back.

Arrays in the transforms are batches ``(B, C, *P)`` with ``P = (Z, Y, X)`` or ``(Y, X)``; angles in radians.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from batchgenerators.augmentations.utils import rotate_coords_2d, rotate_coords_3d
from batchgenerators.transforms.abstract_transforms import AbstractTransform, Compose
from batchgenerators.transforms.color_transforms import (
    BrightnessMultiplicativeTransform,
    ContrastAugmentationTransform,
    GammaTransform,
)
from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform

#: A 3D patch whose largest axis is more than this many times its first axis is augmented as 2D slices.
ANISOTROPY_THRESHOLD = 3.0
#: Scale range used only to size the enlarged sampled patch (nnU-Net's value).
PATCH_SCALE_RANGE = (0.85, 1.25)


def _degrees(value: float) -> float:
    return value / 360.0 * 2.0 * np.pi


@dataclass(frozen=True)
class AugmentationGeometry:
    """Rotation range (radians), dummy-2D switch, mirror axes and the enlarged patch to sample.

    ``sampled_patch_size`` is the patch cut from the case so that after rotation and scaling the central
    ``patch_size`` region is still covered by image data.
    """

    patch_size: tuple[int, ...]
    rotation: tuple[float, float]
    dummy_2d: bool
    mirror_axes: tuple[int, ...]
    sampled_patch_size: tuple[int, ...]

    @classmethod
    def for_patch(cls, patch_size: Sequence[int]) -> AugmentationGeometry:
        """nnU-Net's choices for a 2D ``(Y, X)`` or 3D ``(Z, Y, X)`` patch (voxels)."""
        patch = tuple(int(p) for p in patch_size)
        if len(patch) == 2:
            dummy_2d = False
            limit = 15.0 if max(patch) / min(patch) > 1.5 else 180.0
            mirror_axes: tuple[int, ...] = (0, 1)
        elif len(patch) == 3:
            dummy_2d = max(patch) / patch[0] > ANISOTROPY_THRESHOLD
            limit = 180.0 if dummy_2d else 30.0
            mirror_axes = (0, 1, 2)
        else:
            raise ValueError(f"patch_size must have 2 or 3 axes, got {list(patch)}")
        rotation = (-_degrees(limit), _degrees(limit))
        sampled = enlarged_patch_size(patch, rotation, PATCH_SCALE_RANGE)
        if dummy_2d:
            sampled[0] = patch[0]
        return cls(patch, rotation, dummy_2d, mirror_axes, tuple(int(s) for s in sampled))


def enlarged_patch_size(patch_size: Sequence[int], rotation: tuple[float, float],
                        scale_range: tuple[float, float]) -> list[int]:
    """Bounding size of ``patch_size`` rotated by up to ``rotation`` (capped at 90 deg) about each axis in turn,
    divided by the smallest scale (nnU-Net's ``get_patch_size``)."""
    angle = min(_degrees(90.0), max(abs(r) for r in rotation))
    coords = np.asarray(patch_size, dtype=float)
    size = coords.copy()
    if len(coords) == 3:
        for angles in ((angle, 0, 0), (0, angle, 0), (0, 0, angle)):
            size = np.maximum(size, np.abs(rotate_coords_3d(coords, *angles)))
    else:
        size = np.maximum(size, np.abs(rotate_coords_2d(coords, angle)))
    return [int(s) for s in size / min(scale_range)]


class Convert3DTo2D(AbstractTransform):
    """``(B, C, Z, Y, X)`` -> ``(B, C * Z, Y, X)`` so 2D transforms act on every slice; remembers ``C``."""

    def __call__(self, **batch):
        for key in ("data", "seg"):
            array = batch.get(key)
            if array is not None:
                batch[f"_{key}_channels"] = array.shape[1]
                batch[key] = array.reshape(array.shape[0], array.shape[1] * array.shape[2], *array.shape[3:])
        return batch


class Convert2DTo3D(AbstractTransform):
    """Undo :class:`Convert3DTo2D` (the in-plane size may have changed)."""

    def __call__(self, **batch):
        for key in ("data", "seg"):
            array = batch.get(key)
            if array is not None:
                channels = batch.pop(f"_{key}_channels")
                batch[key] = array.reshape(array.shape[0], channels, array.shape[1] // channels, *array.shape[2:])
        return batch


def training_transforms(geometry: AugmentationGeometry, order_data: int = 3, order_seg: int = 1) -> Compose:
    """nnU-Net's training augmentation for batches cut at ``geometry.sampled_patch_size``; outputs
    ``geometry.patch_size``. Labels use -1 outside the image."""
    rot = geometry.rotation
    spatial_patch = geometry.patch_size[1:] if geometry.dummy_2d else geometry.patch_size
    ignore_axes = (0,) if geometry.dummy_2d else None
    transforms: list[AbstractTransform] = [Convert3DTo2D()] if geometry.dummy_2d else []
    transforms.append(SpatialTransform(
        list(spatial_patch), patch_center_dist_from_border=None, do_elastic_deform=False, alpha=(0, 0),
        sigma=(0, 0), do_rotation=True, angle_x=rot, angle_y=rot, angle_z=rot, p_rot_per_axis=1, do_scale=True,
        scale=(0.7, 1.4), border_mode_data="constant", border_cval_data=0, order_data=order_data,
        border_mode_seg="constant", border_cval_seg=-1, order_seg=order_seg, random_crop=False,
        p_el_per_sample=0, p_scale_per_sample=0.2, p_rot_per_sample=0.2, independent_scale_for_each_axis=False,
    ))
    if geometry.dummy_2d:
        transforms.append(Convert2DTo3D())
    transforms += [
        GaussianNoiseTransform(p_per_sample=0.1),
        GaussianBlurTransform((0.5, 1.0), different_sigma_per_channel=True, p_per_sample=0.2, p_per_channel=0.5),
        BrightnessMultiplicativeTransform(multiplier_range=(0.75, 1.25), p_per_sample=0.15),
        ContrastAugmentationTransform(p_per_sample=0.15),
        SimulateLowResolutionTransform(zoom_range=(0.5, 1), per_channel=True, p_per_channel=0.5, order_downsample=0,
                                       order_upsample=3, p_per_sample=0.25, ignore_axes=ignore_axes),
        GammaTransform((0.7, 1.5), invert_image=True, per_channel=True, retain_stats=True, p_per_sample=0.1),
        GammaTransform((0.7, 1.5), invert_image=False, per_channel=True, retain_stats=True, p_per_sample=0.3),
    ]
    if geometry.mirror_axes:
        transforms.append(MirrorTransform(geometry.mirror_axes))
    return Compose(transforms)

