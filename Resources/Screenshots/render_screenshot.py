"""Render the extension's catalog screenshot offscreen with VTK, from a real CT and its multi-organ label map.

No Slicer application is needed: the picture imitates Slicer's views in a dark theme (a 3D view of the segment
surfaces and the Red/Yellow/Green slice views with the segments filled and outlined over the CT) and names the
segments in a side panel. It reads the TotalSegmentator example CT and label map from the shared data folder
(never copied into this repository)::

    .venv/bin/python Resources/Screenshots/render_screenshot.py                # writes AutoSegNet_segmentation.png
    .venv/bin/python Resources/Screenshots/render_screenshot.py --data ../shared/data/totalseg_examples

Without a display VTK falls back to EGL (or OSMesa) offscreen rendering; ``xvfb-run`` works too.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "totalseg_examples"
DEFAULT_OUTPUT = HERE / "AutoSegNet_segmentation.png"
IMAGE_FILE, LABEL_FILE = "example_ct_sm.nii.gz", "example_seg.nii.gz"
SIZE = (1200, 700)  # pixels (width, height)
PANEL_WIDTH = 300  # pixels, the segment list on the left
BAR_HEIGHT = 22  # pixels, the coloured view-controller bar above each view
CT_WINDOW = (40.0, 350.0)  # HU (level, width): Slicer's "CT abdomen" preset
FILL_OPACITY = 0.5  # Slicer's default 2D fill opacity for segments; outlines are opaque
SMOOTHING_ITERATIONS = 50  # surface nets smoothing passes
DISPLAY_ZOOM = 4  # slice pixels per voxel (labels upsampled nearest-neighbour, CT linearly)


@dataclass(frozen=True)
class Segment:
    """One named segment of the picture: the label values it gathers and its colour (RGB, 0-255)."""

    name: str
    labels: tuple[int, ...]
    color: tuple[int, int, int]
    opacity: float = 1.0


# Label values of TotalSegmentator v2's "total" task (wasserth/TotalSegmentator, totalsegmentator/map_to_binary.py),
# gathered into the structures present in the example slab; colours chosen to tell neighbours apart.
SEGMENTS = (
    Segment("Liver", (5,), (205, 95, 75)),
    Segment("Spleen", (1,), (150, 95, 205)),
    Segment("Kidneys", (2, 3), (235, 160, 60)),
    Segment("Gallbladder", (4,), (110, 175, 70)),
    Segment("Stomach", (6,), (240, 135, 170)),
    Segment("Pancreas", (7,), (250, 205, 105)),
    Segment("Adrenal glands", (8, 9), (250, 245, 90)),
    Segment("Small bowel", (18,), (225, 190, 150)),
    Segment("Duodenum", (19,), (195, 210, 115)),
    Segment("Colon", (20,), (175, 135, 105)),
    Segment("Aorta", (52,), (225, 45, 45)),
    Segment("Inferior vena cava", (63,), (50, 95, 225)),
    Segment("Portal and splenic vein", (64,), (0, 165, 205)),
    Segment("Lung bases", (10, 11, 12, 13, 14), (125, 185, 235), 0.6),
    Segment("Vertebrae T11-L2", (30, 31, 32, 33), (241, 214, 145)),
    Segment("Spinal cord", (79,), (255, 250, 170)),
    Segment("Ribs", tuple(range(92, 116)), (232, 222, 195)),
    Segment("Costal cartilages", (117,), (150, 220, 210), 0.8),
    Segment("Back muscles", (86, 87), (185, 95, 95)),
    Segment("Iliopsoas", (88, 89), (160, 75, 110)),
)

# Slicer's view-controller bar colours (3D view, Red = axial, Yellow = sagittal, Green = coronal).
BAR_COLORS = {"3D": (116, 131, 233), "R": (243, 74, 51), "Y": (237, 213, 76), "G": (110, 176, 75)}
PANEL_COLOR, TEXT_COLOR, DIM_TEXT_COLOR = (50, 50, 52), (235, 235, 235), (165, 165, 170)


@dataclass(frozen=True)
class Case:
    """A CT and its segment map in LPS index order: arrays ``(K, J, I)`` = (S, P, L) axes, spacing (mm, x y z)."""

    ct: np.ndarray
    segments: np.ndarray  # index into SEGMENTS + 1; 0 is background
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]  # LPS, mm
    label_count: int


def load_case(folder: Path) -> Case:
    """Read the CT and label map, turn both to LPS orientation and map the labels onto ``SEGMENTS``."""
    images = []
    for name in (IMAGE_FILE, LABEL_FILE):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: pass --data <folder holding {IMAGE_FILE} and {LABEL_FILE}>")
        images.append(sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS"))
    ct_image, label_image = images
    labels = sitk.GetArrayFromImage(label_image)
    segments = np.zeros(labels.shape, np.uint8)
    for index, segment in enumerate(SEGMENTS, start=1):
        segments[np.isin(labels, segment.labels)] = index
    return Case(sitk.GetArrayFromImage(ct_image).astype(np.float32), segments, ct_image.GetSpacing(),
                ct_image.GetOrigin(), int(np.count_nonzero(np.unique(labels))))


# ----- slice views (numpy) ---------------------------------------------------------------------------------
def slice_rgb(ct: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 picture of one slice, row 0 at the top: CT grey levels, segments filled and outlined."""
    level, width = CT_WINDOW
    grey = ndimage.zoom(np.clip((ct - level + width / 2) / width, 0.0, 1.0), DISPLAY_ZOOM, order=1)
    labels = np.kron(segments, np.ones((DISPLAY_ZOOM, DISPLAY_ZOOM), segments.dtype))
    palette = np.array([(0, 0, 0)] + [s.color for s in SEGMENTS], np.float32) / 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    inside = labels > 0
    rgb[inside] = (1 - FILL_OPACITY) * rgb[inside] + FILL_OPACITY * palette[labels[inside]]
    edge = inside & (ndimage.grey_erosion(labels, size=3) != ndimage.grey_dilation(labels, size=3))
    rgb[edge] = palette[labels[edge]]
    return (rgb * 255).round().astype(np.uint8)


def slice_views(case: Case) -> dict[str, tuple[np.ndarray, str]]:
    """Red (axial), Yellow (sagittal) and Green (coronal) pictures with their captions, as Slicer orients them."""
    k = case.ct.shape[0] // 2  # the middle of the slab
    i = int(round(ndimage.center_of_mass(case.segments == 1)[2]))  # sagittal through the liver
    j = int(round(ndimage.center_of_mass(case.segments == 3)[1]))  # coronal through the kidneys
    (ox, oy, oz), (sx, sy, sz) = case.origin, case.spacing
    superior_up = slice(None, None, -1)
    return {
        # axial: anterior up, patient right on the left of the screen
        "R": (slice_rgb(case.ct[k], case.segments[k]), f"Axial   S: {oz + k * sz:.1f} mm"),
        # sagittal: anterior on the left, superior up
        "Y": (slice_rgb(case.ct[superior_up, :, i], case.segments[superior_up, :, i]),
              f"Sagittal   R: {-(ox + i * sx):.1f} mm"),
        # coronal: superior up, patient right on the left
        "G": (slice_rgb(case.ct[superior_up, j, :], case.segments[superior_up, j, :]),
              f"Coronal   A: {-(oy + j * sy):.1f} mm"),
    }


# ----- VTK scene -------------------------------------------------------------------------------------------
def _vtk() -> SimpleNamespace:
    """The VTK classes used here without their ``vtk`` prefix (``vtk.Renderer``), imported module by module."""
    if not os.environ.get("DISPLAY"):
        # Without an X display pick EGL directly instead of letting VTK try X first and warn.
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text rendering)
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the OpenGL render window)
    from vtkmodules import (
        vtkCommonCore,
        vtkCommonDataModel,
        vtkCommonMath,
        vtkFiltersCore,
        vtkFiltersGeneral,
        vtkIOImage,
        vtkRenderingCore,
    )
    from vtkmodules.util.numpy_support import numpy_to_vtk

    namespace = SimpleNamespace(numpy_to_vtk=numpy_to_vtk)
    for module in (vtkCommonCore, vtkCommonDataModel, vtkCommonMath, vtkFiltersCore, vtkFiltersGeneral, vtkIOImage,
                   vtkRenderingCore):
        for name in dir(module):
            if name.startswith("vtk"):
                setattr(namespace, name.removeprefix("vtk"), getattr(module, name))
    return namespace


def _unit(color: tuple[int, int, int]) -> tuple[float, float, float]:
    return tuple(c / 255.0 for c in color)


class Canvas:
    """A VTK render window cut into views: boxes are ``(x, y, width, height)`` in pixels, y from the bottom."""

    def __init__(self, size: tuple[int, int]):
        self.vtk = _vtk()
        self.size = size
        self.window = self.vtk.RenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetSize(*size)
        self.window.SetMultiSamples(8)

    def view(self, box: tuple[int, int, int, int], background: tuple[int, int, int]):
        x, y, w, h = box
        width, height = self.size
        renderer = self.vtk.Renderer()
        renderer.SetViewport(x / width, y / height, (x + w) / width, (y + h) / height)
        renderer.SetBackground(*_unit(background))
        self.window.AddRenderer(renderer)
        return renderer

    def text(self, renderer, text: str, x: int, y: int, size: int, color=TEXT_COLOR, bold: bool = False) -> None:
        actor = self.vtk.TextActor()
        actor.SetInput(text)
        actor.SetPosition(x, y)
        prop = actor.GetTextProperty()
        prop.SetFontFamilyToArial()
        prop.SetFontSize(size)
        prop.SetColor(*_unit(color))
        prop.SetBold(bold)
        renderer.AddViewProp(actor)

    def rectangle(self, renderer, box: tuple[int, int, int, int], color: tuple[int, int, int]) -> None:
        x, y, w, h = box
        points = self.vtk.Points()
        for corner in ((x, y), (x + w, y), (x + w, y + h), (x, y + h)):
            points.InsertNextPoint(*corner, 0)
        cells = self.vtk.CellArray()
        cells.InsertNextCell(4, (0, 1, 2, 3))
        square = self.vtk.PolyData()
        square.SetPoints(points)
        square.SetPolys(cells)
        mapper = self.vtk.PolyDataMapper2D()
        mapper.SetInputData(square)
        actor = self.vtk.Actor2D()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*_unit(color))
        renderer.AddViewProp(actor)

    def bar(self, box: tuple[int, int, int, int], key: str, caption: str) -> None:
        """Slicer's coloured view-controller bar: the view's letter and what it shows."""
        self.text(self.view(box, BAR_COLORS[key]), f"{key}    {caption}", 8, 4, 13, (20, 20, 20), bold=True)

    def save(self, output: Path) -> Path:
        self.window.Render()
        capture = self.vtk.WindowToImageFilter()
        capture.SetInput(self.window)
        capture.ReadFrontBufferOff()
        writer = self.vtk.PNGWriter()
        writer.SetInputConnection(capture.GetOutputPort())
        writer.SetCompressionLevel(9)
        output.parent.mkdir(parents=True, exist_ok=True)
        writer.SetFileName(str(output))
        writer.Write()
        self.window.Finalize()
        return output


def draw_panel(canvas: Canvas, case: Case) -> None:
    """The left panel: title, what the case is, and the segment list with colour swatches."""
    height = canvas.size[1]
    panel = canvas.view((0, 0, PANEL_WIDTH, height), PANEL_COLOR)
    top = height - 42
    canvas.text(panel, "AutoSegNet", 16, top, 24, bold=True)
    canvas.text(panel, "Segmentation of an abdominal CT", 16, top - 26, 14, DIM_TEXT_COLOR)
    canvas.text(panel, f"{case.label_count} labels shown as {len(SEGMENTS)} segments", 16, top - 46, 14,
                DIM_TEXT_COLOR)
    y = top - 84
    canvas.text(panel, "Segments", 16, y, 15, bold=True)
    for segment in SEGMENTS:
        y -= 24
        canvas.rectangle(panel, (18, y + 1, 16, 16), segment.color)
        canvas.text(panel, segment.name, 44, y + 1, 14)
    canvas.text(panel, "CT and labels: TotalSegmentator example", 16, 30, 12, DIM_TEXT_COLOR)
    canvas.text(panel, "(wasserth/TotalSegmentator, Apache-2.0)", 16, 14, 12, DIM_TEXT_COLOR)


def index_to_ras(vtk: SimpleNamespace, case: Case, padding: int):
    """``vtkMatrix4x4`` from voxel indices (x, y, z) of the segment map padded by ``padding`` to RAS (mm)."""
    matrix = vtk.Matrix4x4()
    for row, (scale, offset, sign) in enumerate(zip(case.spacing, case.origin, (-1, -1, 1), strict=True)):
        matrix.SetElement(row, row, sign * scale)  # LPS -> RAS: x and y change sign
        matrix.SetElement(row, 3, sign * (offset - padding * scale))
    return matrix


def draw_surfaces(canvas: Canvas, renderer, case: Case) -> None:
    """Smoothed surfaces of every segment, in RAS, as Slicer shows its closed-surface representation."""
    vtk = canvas.vtk
    padded = np.pad(case.segments, 1)  # closes the surfaces cut by the top and bottom of the slab
    image = vtk.ImageData()
    image.SetDimensions(padded.shape[2], padded.shape[1], padded.shape[0])
    image.GetPointData().SetScalars(vtk.numpy_to_vtk(padded.ravel(), deep=True))
    placement = index_to_ras(vtk, case, padding=1)
    for index, segment in enumerate(SEGMENTS, start=1):
        if not np.any(case.segments == index):
            continue
        # Surface nets smooth within each voxel, so the 3 mm slice steps do not show as stairs the way they do
        # after marching cubes (vtkDiscreteFlyingEdges3D) and windowed-sinc smoothing.
        surface = vtk.SurfaceNets3D()
        surface.SetInputData(image)
        surface.SetValue(0, index)
        surface.SetOutputStyleToSelected()
        surface.AddSelectedLabel(index)
        surface.SmoothingOn()
        surface.SetNumberOfIterations(SMOOTHING_ITERATIONS)
        normals = vtk.PolyDataNormals()
        normals.SetInputConnection(surface.GetOutputPort())
        normals.SplittingOff()
        mapper = vtk.PolyDataMapper()
        mapper.SetInputConnection(normals.GetOutputPort())
        mapper.ScalarVisibilityOff()
        actor = vtk.Actor()
        actor.SetMapper(mapper)
        actor.SetUserMatrix(placement)
        prop = actor.GetProperty()
        prop.SetColor(*_unit(segment.color))
        prop.SetOpacity(segment.opacity)
        prop.SetSpecular(0.2)
        prop.SetSpecularPower(30)
        renderer.AddActor(actor)


def draw_slice(canvas: Canvas, box: tuple[int, int, int, int], rgb: np.ndarray) -> None:
    """Show an ``(H, W, 3)`` picture (row 0 at the top) centred in ``box``, aspect ratio kept."""
    vtk = canvas.vtk
    renderer = canvas.view(box, (0, 0, 0))
    height, width = rgb.shape[:2]
    image = vtk.ImageData()
    image.SetDimensions(width, height, 1)
    # VTK images start at the bottom row
    image.GetPointData().SetScalars(vtk.numpy_to_vtk(rgb[::-1].reshape(-1, 3).copy(), deep=True))
    actor = vtk.ImageActor()
    actor.GetMapper().SetInputData(image)
    actor.InterpolateOff()
    renderer.AddActor(actor)
    camera = renderer.GetActiveCamera()
    camera.ParallelProjectionOn()
    center = ((width - 1) / 2, (height - 1) / 2)
    camera.SetFocalPoint(*center, 0)
    camera.SetPosition(*center, 1000)
    camera.SetViewUp(0, 1, 0)
    camera.SetParallelScale(1.02 * max(height / 2, width / 2 * box[3] / box[2]))
    renderer.ResetCameraClippingRange()


def render(case: Case, output: Path, size: tuple[int, int] = SIZE) -> Path:
    """Draw the panel, the 3D and axial views (top) and the sagittal and coronal views (bottom) into a PNG.

    ``size`` is (width, height) in pixels. The slab is only 30 slices thick, so the sagittal and coronal views get
    the short bottom row and the axial view the large one beside the 3D view.
    """
    canvas = Canvas(size)
    width, height = size
    draw_panel(canvas, case)

    column_width = (width - PANEL_WIDTH) // 2
    bottom_height = round(0.34 * height)
    top_height = height - bottom_height
    left, right = PANEL_WIDTH, PANEL_WIDTH + column_width
    gap = 2  # pixels between views

    three_d = canvas.view((left, bottom_height, column_width - gap, top_height - BAR_HEIGHT), (0, 0, 0))
    three_d.GradientBackgroundOn()
    three_d.SetBackground(*_unit((8, 8, 12)))
    three_d.SetBackground2(*_unit((58, 60, 78)))
    canvas.bar((left, height - BAR_HEIGHT, column_width - gap, BAR_HEIGHT), "3D", "Segments as surfaces")
    draw_surfaces(canvas, three_d, case)
    camera = three_d.GetActiveCamera()
    camera.SetFocalPoint(0, 0, 0)
    camera.SetPosition(0, 1, 0)  # from the front, superior up (patient right on the left), then turned
    camera.SetViewUp(0, 0, 1)
    three_d.ResetCamera()
    camera.Azimuth(20)
    camera.Elevation(45)
    camera.OrthogonalizeViewUp()
    three_d.ResetCamera()
    camera.Zoom(1.3)
    three_d.ResetCameraClippingRange()

    views = slice_views(case)
    boxes = {"R": (right, bottom_height, width - right, top_height),
             "Y": (left, 0, column_width - gap, bottom_height - gap),
             "G": (right, 0, width - right, bottom_height - gap)}
    for key, (x, y, w, h) in boxes.items():
        rgb, caption = views[key]
        draw_slice(canvas, (x, y, w, h - BAR_HEIGHT), rgb)
        canvas.bar((x, y + h - BAR_HEIGHT, w, BAR_HEIGHT), key, caption)
    return canvas.save(output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ["AUTOSEGNET_SHARED_DATA"]) / "totalseg_examples" if os.environ.get(
        "AUTOSEGNET_SHARED_DATA") else DEFAULT_DATA
    parser.add_argument("--data", type=Path, default=default_data,
                        help=f"folder holding {IMAGE_FILE} and {LABEL_FILE} (default: {default_data})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"PNG to write (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--size", type=int, nargs=2, default=SIZE, metavar=("WIDTH", "HEIGHT"))
    args = parser.parse_args(argv)
    written = render(load_case(args.data), args.output, tuple(args.size))
    sys.stdout.write(f"{written} ({written.stat().st_size // 1024} KiB)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
