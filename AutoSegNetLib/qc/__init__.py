"""Quality control by eye: overlay pictures of label maps (and predictions) on their images, and a gallery.

Entry point: :func:`plot_overlays` (``autosegnet plot-overlays``, nnU-Net's ``nnUNetv2_plot_overlay_pngs``).
Cases come from :func:`dataset_cases` (a raw dataset) or :func:`folder_cases` (image + label folders). The
pictures are built from pure NumPy pieces in :mod:`AutoSegNetLib.qc.overlays`, laid out by
:mod:`AutoSegNetLib.qc.figure` and listed by :mod:`AutoSegNetLib.qc.gallery`.
"""

from AutoSegNetLib.qc.cases import LabelNames, OverlayCase, dataset_cases, folder_cases
from AutoSegNetLib.qc.overlays import OverlayStyle, Plane
from AutoSegNetLib.qc.plot import CaseOverlay, LabelStats, OverlayOptions, plot_case, plot_overlays

__all__ = [
    "CaseOverlay",
    "LabelNames",
    "LabelStats",
    "OverlayCase",
    "OverlayOptions",
    "OverlayStyle",
    "Plane",
    "dataset_cases",
    "folder_cases",
    "plot_case",
    "plot_overlays",
]
