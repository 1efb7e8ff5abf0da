"""Command lines copied from nnU-Net v2 parse to the meaning docs/nnunet_commands.md documents (parsing only).

Every row of the tables there is one test: the AutoSegNet command line goes through ``build_parser().parse_args``
and the "Parses to" cell is checked on the result (``field=value``; ``error: TEXT``; ``ignored: FLAGS``;
``*=VALUE``). Rows of commands not registered in this build are skipped; rows marked **Pending** are expected to
fail until the command's owner adds the spelling.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from AutoSegNetLib.cli import COMMANDS, build_parser
from AutoSegNetLib.cli.arguments import notes_of

TABLE = Path(__file__).resolve().parents[2] / "docs" / "nnunet_commands.md"

#: nnU-Net v2's entry points ([project.scripts] of its pyproject.toml): each needs a row.
NNUNET_COMMANDS = (
    "nnUNetv2_plan_and_preprocess", "nnUNetv2_extract_fingerprint", "nnUNetv2_plan_experiment", "nnUNetv2_preprocess",
    "nnUNetv2_train", "nnUNetv2_predict_from_modelfolder", "nnUNetv2_predict", "nnUNetv2_convert_old_nnUNet_dataset",
    "nnUNetv2_find_best_configuration", "nnUNetv2_determine_postprocessing", "nnUNetv2_apply_postprocessing",
    "nnUNetv2_ensemble", "nnUNetv2_accumulate_crossval_results", "nnUNetv2_plot_overlay_pngs",
    "nnUNetv2_download_pretrained_model_by_url", "nnUNetv2_install_pretrained_model_from_zip",
    "nnUNetv2_export_model_to_zip", "nnUNetv2_move_plans_between_datasets", "nnUNetv2_evaluate_folder",
    "nnUNetv2_evaluate_simple", "nnUNetv2_convert_MSD_dataset",
)


@dataclass(frozen=True)
class Row:
    """One table row: the nnU-Net command (or "—"), the AutoSegNet command, what it parses to, the notes."""

    nnunet: str
    autosegnet: str
    expected: str
    notes: str

    @property
    def command(self) -> str:
        return shlex.split(self.autosegnet)[1]

    @property
    def pending(self) -> bool:
        return "**Pending:**" in self.notes


def table_rows(text: str) -> list[Row]:
    """The rows of every table whose header is "nnU-Net v2 | AutoSegNet | Parses to | Notes"."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith("`autosegnet "):
            continue
        rows.append(Row(_code(cells[0]), _code(cells[1]), _code(cells[2]), cells[3]))
    return rows


def _code(cell: str) -> str:
    match = re.fullmatch(r"`(.*)`", cell)
    return match.group(1) if match else cell


ROWS = table_rows(TABLE.read_text(encoding="utf-8"))


def canonical(value: object) -> str:
    """How the table writes a parsed value: lists space-separated, true/false, none."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return " ".join(canonical(v) for v in value)
    return str(value)


def parse(row: Row, capsys: pytest.CaptureFixture[str]) -> tuple[argparse.Namespace | None, str]:
    """The parsed arguments (None when parsing stopped) and what the parser wrote to stderr."""
    try:
        return build_parser().parse_args(shlex.split(row.autosegnet)[1:]), ""
    except SystemExit as stop:
        assert stop.code == 2, f"{row.autosegnet}: exit status {stop.code}"
        return None, capsys.readouterr().err


def check(row: Row, parsed: argparse.Namespace | None, stderr: str) -> None:
    """Assert the row's "Parses to" cell."""
    if row.expected.startswith("error:"):
        assert parsed is None, f"{row.autosegnet} parsed, but should stop with {row.expected!r}"
        message = stderr.strip().splitlines()[-1]
        assert row.expected[len("error:"):].strip() in message, message
        return
    assert parsed is not None, f"{row.autosegnet} did not parse: {stderr.strip().splitlines()[-1]}"
    fields = vars(parsed)
    for part in filter(None, (p.strip() for p in row.expected.split(";"))):
        if part.startswith("ignored:"):
            noted = {note.split(" ")[0].rstrip(":") for note in notes_of(parsed)}
            for flag in part[len("ignored:"):].split():
                assert flag in noted, f"{row.autosegnet}: no note for {flag} (notes: {notes_of(parsed)})"
            continue
        name, _, value = part.partition("=")
        if name == "*":
            assert value in {canonical(v) for v in fields.values()}, f"{row.autosegnet}: no field holds {value!r}"
            continue
        assert name in fields, f"{row.autosegnet}: no field {name!r} in {sorted(fields)}"
        assert canonical(fields[name]) == value, f"{row.autosegnet}: {name}={canonical(fields[name])!r}"


@pytest.mark.parametrize("row", ROWS, ids=[r.autosegnet[len("autosegnet "):] for r in ROWS])
def test_the_documented_command_line_parses_to_the_documented_meaning(row, capsys):
    if row.command not in {c.name for c in COMMANDS}:
        pytest.skip(f"`autosegnet {row.command}` is not registered in this build yet")
    parsed, stderr = parse(row, capsys)
    if row.pending:
        try:
            check(row, parsed, stderr)
        except AssertionError as failure:
            pytest.xfail(f"pending spelling of {row.command}: {failure}")
        return
    check(row, parsed, stderr)


def test_the_table_has_a_row_for_every_nnunet_command():
    documented = {shlex.split(r.nnunet)[0] for r in ROWS if r.nnunet.startswith("nnUNetv2_")}
    assert sorted(set(NNUNET_COMMANDS) - documented) == []


def test_readme_commands_with_the_entry_point_replaced_stay_literal():
    """The rows copied from nnU-Net's documentation differ from it only in the entry point."""
    entry_points = {"nnUNetv2_plan_and_preprocess": "plan-and-preprocess", "nnUNetv2_predict": "predict",
                    "nnUNetv2_train": "train", "nnUNetv2_ensemble": "ensemble",
                    "nnUNetv2_find_best_configuration": "find-best"}
    literal = [r for r in ROWS if r.nnunet.split(" ")[0] in entry_points]
    assert len(literal) > 20
    for row in literal:
        nnunet_args = row.nnunet.split(" ")
        assert row.autosegnet.split(" ") == ["autosegnet", entry_points[nnunet_args[0]], *nnunet_args[1:]], row


def test_a_glued_short_option_is_refused_instead_of_split(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "-i", "IN", "-o", "OUT", "-d", "4", "-c", "2d", "-chkpt", "x"])
    assert "unknown option -chkpt" in capsys.readouterr().err


def test_an_abbreviated_long_option_is_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "-i", "IN", "-o", "OUT", "-d", "4", "-c", "2d", "--save-prob"])
    assert "--save-prob" in capsys.readouterr().err


def test_negative_numbers_stay_values():
    parsed = build_parser().parse_args(["plot-overlays", "-d", "4", "-o", "O", "--ct-window", "-1000", "-500.5"])
    assert parsed.ct_window == [-1000.0, -500.5]


def test_a_dataset_given_both_ways_counts_once():
    assert build_parser().parse_args(["verify", "4", "-d", "4"]).dataset == "4"


def test_a_missing_fold_is_reported_with_an_example(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "4", "3d_fullres"])
    assert "autosegnet train 4 3d_fullres 0" in capsys.readouterr().err


def test_pretrained_weights_with_a_config_file_keeps_the_file_and_notes_it(tmp_path):
    parsed = build_parser().parse_args(["train", "4", "2d", "0", "-pretrained_weights", "w.pth",
                                        "--config", str(tmp_path / "c.json")])
    assert parsed.pretrained == Path("w.pth") and parsed.epochs is None
    assert any(note.startswith("-pretrained_weights with --config") for note in notes_of(parsed))


def test_pretrained_weights_and_continue_are_refused_together(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "4", "2d", "0", "-pretrained_weights", "w.pth", "--c"])
    assert "choose one" in capsys.readouterr().err


@pytest.mark.parametrize(("trainer", "option"), [
    ("nnUNetTrainer_1epoch", "--epochs 1"),
    ("nnUNetTrainer_2000epochs_NoMirroring", "--epochs 2000"),
    ("nnUNetTrainerNoDeepSupervision", '"deep_supervision": false'),
    ("nnUNetTrainer_warmup", "--warmup-epochs 50"),
    ("nnUNetTrainerDiceLoss", "--config FILE.json"),
])
def test_each_trainer_variant_names_its_autosegnet_option(trainer, option, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "4", "2d", "0", "-tr", trainer])
    assert option in capsys.readouterr().err
