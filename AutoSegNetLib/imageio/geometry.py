"""The one in-memory description of where an image array lies in physical space.

Axis order (used everywhere in the engine):
- arrays are NumPy-ordered: images ``(C, Z, Y, X)``, label maps ``(Z, Y, X)``; 2D images have ``Z == 1``;
- ``Geometry.spacing`` follows the **array** order ``(z, y, x)`` in mm, because every stage that reasons
  about spacing (fingerprint, planner, resampling) works on arrays;
- ``Geometry.origin`` and ``Geometry.direction`` stay in ITK's physical order ``(x, y, z)`` (LPS, mm) with
  the direction as 9 row-major cosines, exactly as SimpleITK reports them, because they are only used to
  write results back and to compare cases.

2D images (natural images, 2D ITK files) get ``spacing[0] == 999.0`` like nnU-Net, so the planner can tell
that the out-of-plane axis does not exist, and ``image_dim == 2`` so writers produce a 2D file again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PSEUDO_2D_SPACING = 999.0
IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Geometry:
    """Spacing (z, y, x) in mm, origin (x, y, z) in mm, direction (9 row-major cosines, ITK order)."""

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY_DIRECTION
    image_dim: int = 3
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.spacing) != 3 or len(self.origin) != 3 or len(self.direction) != 9:
            raise ValueError(
                f"Geometry needs 3 spacings, 3 origin values and 9 direction cosines, got "
                f"{len(self.spacing)}, {len(self.origin)} and {len(self.direction)}."
            )
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", tuple(float(d) for d in self.direction))

    @property
    def is_2d(self) -> bool:
        """True for images without a real third axis (natural images, 2D ITK files)."""
        return self.image_dim == 2

    @property
    def direction_matrix(self) -> np.ndarray:
        """Direction cosines as a (3, 3) array in ITK (x, y, z) order."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def differences(self, other: Geometry, tolerance: float = 1e-4) -> list[str]:
        """Describe how ``other`` differs from this geometry, with the numbers; empty if it matches.

        See :meth:`mismatches` for the meaning of ``tolerance``.
        """
        return list(self.mismatches(other, tolerance).values())

    def mismatches(self, other: Geometry, tolerance: float = 1e-4) -> dict[str, str]:
        """``{"spacing" | "origin" | "direction": description with both values}`` for what differs.

        ``tolerance`` is relative for spacing, absolute for direction cosines, and absolute in mm for the
        origin but never below 1/1000 of the largest real voxel spacing (the pseudo-2D 999 is not a real one),
        so float32 header rounding does not count as a mismatch.
        """
        found = {}
        a, b = np.asarray(self.spacing), np.asarray(other.spacing)
        if not np.allclose(a, b, rtol=tolerance, atol=0):
            found["spacing"] = f"spacing {_fmt(a)} vs {_fmt(b)} (z, y, x mm)"
        a, b = np.asarray(self.origin), np.asarray(other.origin)
        if not np.allclose(a, b, rtol=0, atol=max(tolerance, 1e-3 * self.largest_real_spacing)):
            found["origin"] = f"origin {_fmt(a)} vs {_fmt(b)} (x, y, z mm), difference {_fmt(b - a)}"
        a, b = self.direction_matrix, other.direction_matrix
        if not np.allclose(a, b, rtol=0, atol=tolerance):
            found["direction"] = f"direction {_fmt(a.ravel())} vs {_fmt(b.ravel())}"
        return found

    @property
    def largest_real_spacing(self) -> float:
        """The largest voxel spacing in mm, ignoring the pseudo-2D out-of-plane 999."""
        return float(max(self.spacing[1:] if self.is_2d else self.spacing))

    def orientation_code(self) -> str:
        """Three-letter anatomical code of the ITK (x, y, z) axes in LPS convention, e.g. ``'LPS'``."""
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        code = ""
        for column in self.direction_matrix.T:
            axis = int(np.argmax(np.abs(column)))
            code += letters[axis][0 if column[axis] > 0 else 1]
        return code


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"
