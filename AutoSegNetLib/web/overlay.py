"""An uncertainty map over the image in the slice views (plain MRML: slice composite and display nodes)."""

from __future__ import annotations

OVERLAY_COLOURS = "vtkMRMLColorTableNodeRainbow"  # Slicer's colour table for the uncertainty overlay


def show_overlay(scene, volume, opacity: float = 0.4) -> bool:
    """Show ``volume`` (an uncertainty map) over the image in every slice view, in rainbow colours where the
    scene has that colour table; with ``volume`` None, remove an earlier overlay. Returns whether one is shown."""
    for composite in _nodes(scene, "vtkMRMLSliceCompositeNode"):
        composite.SetForegroundVolumeID(volume.GetID() if volume is not None else None)
        composite.SetForegroundOpacity(opacity)
    if volume is None:
        return False
    display = volume.GetDisplayNode()
    if display is not None and scene.GetNodeByID(OVERLAY_COLOURS) is not None:
        display.SetAndObserveColorNodeID(OVERLAY_COLOURS)
    return True


def _nodes(scene, class_name: str) -> list:
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]
