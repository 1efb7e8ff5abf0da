"""A readable table of a plan: one column per configuration, one row per decision."""

from __future__ import annotations

from collections.abc import Sequence

from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans


def plans_summary(plans: Plans) -> str:
    """Header lines plus a table of every configuration's decisions (axes in the transposed order)."""
    header = [
        f"Plans for {plans.dataset_name}: planner {plans.planner!r} ({plans.plans_name}), "
        f"GPU memory target {plans.gpu_memory_target_gb:g} GB",
        f"transpose {plans.transpose_forward}; median spacing {_axes(plans.original_median_spacing)} mm; "
        f"median shape {_axes(plans.original_median_shape)} (after cropping, transposed)",
    ]
    names = list(plans.configurations)
    rows = [("", names)] + [(label, [cell(plans.configurations[n]) for n in names]) for label, cell in _ROWS]
    return "\n".join(header + [""] + _table(rows))


def _table(rows: list[tuple[str, list[str]]]) -> list[str]:
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(cells[i]) for _, cells in rows) for i in range(len(rows[0][1]))]
    lines = []
    for label, cells in rows:
        line = label.ljust(label_width) + "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths))
        lines.append(line.rstrip())
    return lines


def _axes(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.4g}" for v in values)


def _per_stage(values: Sequence[Sequence[int]]) -> str:
    """``3x3x3 (all)`` when every stage has the same, else the list."""
    parts = ["x".join(str(v) for v in stage) for stage in values]
    return f"{parts[0]} (all)" if len(set(parts)) == 1 else ", ".join(parts)


def _numbers(values: Sequence[int]) -> str:
    return ",".join(str(v) for v in values)


def _yes(values: Sequence[bool] | bool) -> str:
    if isinstance(values, bool):
        return "yes" if values else "no"
    return ",".join("yes" if v else "no" for v in values)


def _stage(conf: ConfigurationPlan) -> str:
    before = f"after {conf.previous_stage}" if conf.previous_stage else ""
    after = f"feeds {conf.next_stage}" if conf.next_stage else ""
    return "; ".join(p for p in (before, after) if p) or "-"


_ROWS = (
    ("spacing (mm)", lambda c: _axes(c.spacing)),
    ("median image size", lambda c: _axes(c.median_image_size)),
    ("patch size", lambda c: _axes(c.patch_size)),
    ("batch size", lambda c: str(c.batch_size)),
    ("network", lambda c: str(c.network.get("name"))),
    ("stages", lambda c: str(len(c.network.get("features_per_stage", [])))),
    ("features per stage", lambda c: _numbers(c.network.get("features_per_stage", []))),
    ("pooling strides", lambda c: ", ".join("x".join(map(str, s)) for s in c.network.get("strides", []))),
    ("kernel sizes", lambda c: _per_stage(c.network.get("kernel_sizes", [[0]]))),
    ("convs/blocks encoder", lambda c: _numbers(c.network.get("n_conv_per_stage", []))),
    ("convs decoder", lambda c: _numbers(c.network.get("n_conv_per_stage_decoder", []))),
    ("normalisation", lambda c: ",".join(c.normalization_schemes)),
    ("use mask for norm", lambda c: _yes(c.use_mask_for_norm)),
    ("batch dice", lambda c: _yes(c.batch_dice)),
    ("cascade", _stage),
    ("data identifier", lambda c: c.data_identifier),
)
