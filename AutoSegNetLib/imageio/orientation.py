"""Exact reorientation of arrays by axis permutation and flips (no interpolation).

An orientation code names, for each ITK axis ``(x, y, z)``, the anatomical direction it points to in the LPS
convention (``"LPS"``: x towards the patient's left, y posterior, z superior; see
:meth:`Geometry.orientation_code`). A network only sees arrays, so a case stored with other axes than the
training cases (``"RAS"``, or sagittal slices stacked along z) looks mirrored or transposed to it.
:class:`Reorientation` maps a case onto the training cases' orientation and back, voxel for voxel.

Array axes are NumPy-ordered ``(..., Z, Y, X)``: array axis ``-1 - i`` is ITK axis ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from AutoSegNetLib.imageio.geometry import Geometry

_AXIS_OF_LETTER = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}
_POSITIVE = "LPS"


def is_valid_orientation(code: str | None) -> bool:
    """True for a code naming each anatomical axis once, such as ``"LPS"`` or ``"ASL"``."""
    return (
        isinstance(code, str) and len(code) == 3 and all(c in _AXIS_OF_LETTER for c in code)
        and len({_AXIS_OF_LETTER[c] for c in code}) == 3
    )


@dataclass(frozen=True)
class Reorientation:
    """Which source ITK axis becomes each target ITK axis, and whether it is reversed.

    ``source_axis[j]`` is the ITK axis of the source that becomes target ITK axis ``j``; ``flip[j]`` says
    whether its voxel order is reversed. Applying it to an array and :meth:`invert` undo each other exactly.
    """

    source_axis: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @classmethod
    def between(cls, source: str, target: str) -> Reorientation:
        """The reorientation that turns an array stored in orientation ``source`` into one in ``target``.

        Raises ``ValueError`` for a code that does not name each anatomical axis once (an oblique direction
        whose axes both lie closest to the same anatomical axis).
        """
        for code in (source, target):
            if not is_valid_orientation(code):
                raise ValueError(f"{code!r} is not an orientation code naming each of L/R, P/A, S/I once.")
        source_axis, flip = [], []
        for letter in target:
            i = next(k for k, c in enumerate(source) if _AXIS_OF_LETTER[c] == _AXIS_OF_LETTER[letter])
            source_axis.append(i)
            flip.append(source[i] != letter)
        return cls(tuple(source_axis), tuple(flip))  # type: ignore[arg-type]

    @property
    def is_identity(self) -> bool:
        return self.source_axis == (0, 1, 2) and not any(self.flip)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """``(..., Z, Y, X)`` in the source orientation -> the same voxels in the target orientation (a view)."""
        lead = array.ndim - 3
        # target array axis -1-j comes from source array axis -1-source_axis[j]
        order = [lead + 2 - self.source_axis[2 - k] for k in range(3)]
        moved = np.transpose(array, (*range(lead), *order))
        flips = tuple(lead + 2 - j for j in range(3) if self.flip[j])
        return np.flip(moved, flips) if flips else moved

    def invert(self, array: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`apply`: target orientation ``(..., Z, Y, X)`` -> source orientation (a view)."""
        lead = array.ndim - 3
        flips = tuple(lead + 2 - j for j in range(3) if self.flip[j])
        array = np.flip(array, flips) if flips else array
        inverse = [0, 0, 0]
        for k in range(3):
            inverse[2 - self.source_axis[2 - k]] = k
        return np.transpose(array, (*range(lead), *(lead + i for i in inverse)))

    def geometry(self, geometry: Geometry, shape: tuple[int, ...]) -> Geometry:
        """The geometry of the reoriented array, given the source geometry and the source ``(.., Z, Y, X)`` shape.

        Every voxel keeps its physical position: the origin moves to the voxel that becomes the first one.
        """
        size_xyz = np.asarray(shape[-3:][::-1])
        spacing_xyz = np.asarray(geometry.spacing[::-1], dtype=float)
        direction = geometry.direction_matrix
        source_index = np.zeros(3)  # ITK index (x, y, z) of the source voxel that becomes the first one
        for j, i in enumerate(self.source_axis):
            source_index[i] = size_xyz[i] - 1 if self.flip[j] else 0
        origin = np.asarray(geometry.origin) + direction @ (source_index * spacing_xyz)
        columns = [direction[:, i] * (-1.0 if self.flip[j] else 1.0) for j, i in enumerate(self.source_axis)]
        new_spacing_xyz = [spacing_xyz[i] for i in self.source_axis]
        return Geometry(
            spacing=tuple(new_spacing_xyz[::-1]),
            origin=tuple(origin),
            direction=tuple(np.stack(columns, axis=1).ravel()),
            image_dim=geometry.image_dim,
            extra=dict(geometry.extra),
        )
