"""AutoSegNet engine: a self-configuring segmentation pipeline in the nnU-Net v2 family.

The engine never imports slicer, qt, ctk or vtk. Stages live in sub-packages named for them
(`dataset`, `imageio`, `fingerprint`, `planning`, `preprocessing`, `network`, `training`,
`inference`, `evaluation`, `models`); `cli` only parses arguments and calls the stage entry points.

Axis convention, used everywhere: image arrays are ``(C, Z, Y, X)`` and label arrays ``(Z, Y, X)``
in NumPy order, i.e. the reverse of ITK's ``(x, y, z)`` index order. 2D images are stored as
``(C, 1, Y, X)``. See :class:`AutoSegNetLib.imageio.Geometry` for how spacing, origin and direction
relate to that order.
"""

__version__ = "0.1.0"
