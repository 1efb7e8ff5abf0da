"""The AutoSegNet panel's layout (right-hand drawer beside trame-slicer's segment editor and views).

Only layout: every button calls a controller function bound in :mod:`.ui`, every text shows a state variable that
:mod:`.ui` keeps up to date. Element ids (``asn-...``) are what the browser test drives.
"""

from __future__ import annotations

from AutoSegNetSceneLib.options import AMP_CHOICES, CONFIGURATIONS, DEVICES, FOLDS
from trame.widgets import html
from trame.widgets import vuetify3 as v

from AutoSegNetLib.web.downloads import ROUTE

FIELD = {"density": "compact", "hide_details": True}


def js_list(values) -> str:
    """A JavaScript array literal of plain words, for a select's ``items``."""
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


def build_panel(app) -> None:
    """Add the panel to trame-slicer's ``SegmentationApp`` ``app``."""
    ctrl = app.server.controller
    app.ui.title.set_text("AutoSegNet")
    drawer_options = {"location": "right", "permanent": True, "width": 400}
    with app.ui, v.VNavigationDrawer(**drawer_options), v.VCard(flat=True, classes="pa-3"):
        html.Div("{{ asn_message }}", id="asn-message", classes="text-caption mb-2")
        _volume_section(ctrl)
        v.VDivider(classes="my-2")
        _training_section(ctrl)
        v.VDivider(classes="my-2")
        _segment_section(ctrl)
        v.VDivider(classes="my-2")
        _download_section(ctrl)


def _volume_section(ctrl) -> None:
    v.VTextField(v_model=("asn_path",), label="Image file on the server", id="asn-path", **FIELD)
    v.VBtn("Load volume", click=ctrl.asn_load, id="asn-load", block=True, classes="my-2")
    html.Div("{{ asn_painted }} voxel(s) in the active segment", id="asn-painted", classes="text-caption")
    with html.Div(classes="d-flex my-2"):
        v.VBtn("Add as training case", click=ctrl.asn_add_case, id="asn-add-case", disabled=("!asn_volume",),
               color="primary", classes="mr-2", size="small")
        v.VBtn("Add corrected case", click=ctrl.asn_add_corrected, id="asn-add-corrected",
               disabled=("!asn_volume",), size="small")
    html.Div("{{ asn_cases.length }} case(s)", id="asn-case-count", classes="text-body-2")
    row = {"v_for": "c in asn_cases", "key": "c.name"}
    with v.VTable(density="compact", id="asn-cases"), html.Tbody(), html.Tr(**row):
        for field in ("name", "volume", "status", "segments"):
            html.Td("{{ c." + field + " }}")


def _training_section(ctrl) -> None:
    with html.Div(classes="d-flex"):
        v.VTextField(v_model=("asn_epochs",), label="Epochs", type="number", id="asn-epochs", classes="mr-2",
                     **FIELD)
        v.VTextField(v_model=("asn_iterations",), label="Iterations/epoch (blank: default)", id="asn-iterations",
                     **FIELD)
    with html.Div(classes="d-flex mt-2"):
        v.VSelect(v_model=("asn_configuration",), items=(js_list(CONFIGURATIONS),), label="Configuration",
                  id="asn-configuration", classes="mr-2", **FIELD)
        v.VSelect(v_model=("asn_fold",), items=(js_list(FOLDS),), label="Fold", id="asn-fold", **FIELD)
    with html.Div(classes="d-flex mt-2"):
        v.VTextField(v_model=("asn_budget",), label="Time budget (min, blank: none)", id="asn-budget",
                     classes="mr-2", **FIELD)
        v.VSelect(v_model=("asn_device",), items=(js_list(DEVICES),), label="Device", id="asn-device", **FIELD)
    v.VSelect(v_model=("asn_amp",), items=(js_list(AMP_CHOICES),), label="Precision (bf16: fast on CPUs with native "
              "bfloat16)", id="asn-amp", classes="mt-2", **FIELD)
    with html.Div(classes="d-flex flex-wrap my-2"):
        busy = "asn_jobs.train.running"
        v.VBtn("Train", click=ctrl.asn_train, id="asn-train", color="primary", size="small", classes="mr-1",
               disabled=(f"{busy} || asn_cases.length === 0",))
        v.VBtn("Resume", click=ctrl.asn_resume, id="asn-resume", size="small", classes="mr-1", disabled=(busy,))
        v.VBtn("Retrain", click=ctrl.asn_retrain, id="asn-retrain", size="small", classes="mr-1",
               disabled=(f"{busy} || asn_models.length === 0",))
        v.VBtn("Stop", click=ctrl.asn_stop, id="asn-stop", size="small", disabled=(f"!{busy}",))
    _job_progress("train")
    _charts()


def _job_progress(kind: str) -> None:
    job = f"asn_jobs.{kind}"
    v.VProgressLinear(model_value=(f"{job}.fraction === null ? 0 : 100 * {job}.fraction",),
                      indeterminate=(f"{job}.running && {job}.fraction === null",), height=6)
    html.Div("{{ " + job + ".text }}", id=f"asn-{kind}-progress", classes="text-caption mt-1")


def _charts() -> None:
    """The loss and pseudo-Dice charts: one SVG each (a polyline per series), the value range and a legend."""
    with html.Div(v_for="chart in asn_charts", key="chart.title", classes="mt-2", id="asn-charts"):
        html.Div("{{ chart.title }} ({{ chart.low }} to {{ chart.high }})", classes="text-caption")
        html.Div(v_html=("chart.svg",))  # numbers and escaped names only (curves.svg)
        with html.Div(classes="text-caption"):
            html.Span("■ {{ s.name }} ", v_for="s in chart.series", key="s.name", style=("{color: s.colour}",))


def _segment_section(ctrl) -> None:
    v.VSelect(v_model=("asn_model",), items=("asn_models",), label="Model", id="asn-model", item_title="title",
              item_value="value", **FIELD)
    html.Div("{{ asn_models.length }} model(s): {{ asn_models.map(m => m.title.split(' · ')[2]).join(', ') }}",
             id="asn-models", classes="text-caption")
    with html.Div(classes="d-flex"):
        v.VCheckbox(v_model=("asn_tta",), label="Mirroring (TTA)", id="asn-tta", **FIELD)
        v.VCheckbox(v_model=("asn_uncertainty",), label="Uncertainty", id="asn-uncertainty", **FIELD)
    v.VBtn("Segment", click=ctrl.asn_segment, id="asn-segment", color="primary", block=True, classes="my-1",
           disabled=("!asn_volume || asn_models.length === 0 || asn_jobs.segment.running",))
    _job_progress("segment")
    html.Div("Segments: {{ asn_segments.join(', ') }}", id="asn-segments", classes="text-caption")


def _download_section(ctrl) -> None:
    with html.Div(classes="d-flex flex-wrap"):
        v.VBtn("Segmentation .nii.gz", click=(ctrl.asn_download, "['nifti']"), id="asn-download-nifti",
               size="small", classes="mr-1 mb-1", disabled=("!asn_volume",))
        v.VBtn("Segmentation .nrrd", click=(ctrl.asn_download, "['nrrd']"), id="asn-download-nrrd",
               size="small", classes="mr-1 mb-1", disabled=("!asn_volume",))
        v.VBtn("Model zip (chosen model)", click=ctrl.asn_export_model, id="asn-export-model", size="small",
               classes="mb-1", disabled=("asn_models.length === 0 || asn_jobs.zip.running",))
    _job_progress("zip")
    with html.Div(v_for="d in asn_downloads", key="d", classes="text-caption"):
        html.A("{{ d }}", href=(f"'{ROUTE}/' + d",), download=True, classes="asn-download-link")
