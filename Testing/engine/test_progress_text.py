"""Progress for a person: bars with ETA on a terminal, readable lines elsewhere, Dice by label name."""

from __future__ import annotations

import io
import logging

from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.progress_text import TextProgress, epoch_line

EPOCH = {"event": "epoch", "epoch": 3, "epochs": 100, "train_loss": 0.51204, "val_loss": 0.49811,
         "pseudo_dice": {"liver": 0.9123, "tumour": float("nan")}, "lr": 0.00981, "epoch_s": 41.23}


def training_events(epochs: int = 2, iterations: int = 4) -> list[dict]:
    events = [{"event": "stage", "stage": "train", "configuration": "3d_fullres", "fold": 0}]
    for epoch in range(1, epochs + 1):
        events += [{"event": "iteration", "epoch": epoch, "epochs": epochs, "iteration": i, "iterations": iterations,
                    "train_loss": 1.0 / i} for i in range(1, iterations + 1)]
        events.append({**EPOCH, "epoch": epoch, "epochs": epochs})
    return [*events, {"event": "done", "status": "finished"}]


def test_the_epoch_line_names_labels_and_reads_as_a_sentence():
    assert epoch_line(EPOCH) == ("epoch 3/100  train loss 0.5120  val loss 0.4981  Dice liver 0.912, tumour n/a  "
                                 "lr 0.00981  41.2 s")


def test_a_terminal_gets_bars_with_eta_and_one_line_per_epoch():
    stream = io.StringIO()
    progress = TextProgress(stream, live=True)
    for event in training_events():
        progress.handle(event)
    out = stream.getvalue()
    assert "epoch 2: 100%" in out or "epoch 2:" in out and "4/4" in out
    assert "<" in out  # tqdm's remaining-time estimate, e.g. [00:00<00:00]
    assert out.count("Dice liver 0.912") == 2 and "done (finished)." in out


def test_case_events_become_a_bar_on_a_terminal():
    stream = io.StringIO()
    progress = TextProgress(stream, live=True)
    for index in range(1, 4):
        progress.handle({"event": "case", "stage": "predict", "case": f"c{index}", "index": index, "total": 3})
    progress.close()
    assert "predict" in stream.getvalue() and "3/3" in stream.getvalue()


def test_elsewhere_every_case_and_epoch_is_one_plain_log_line_and_iterations_are_left_out(caplog):
    progress = TextProgress(io.StringIO(), live=False)
    with caplog.at_level(logging.INFO, logger="AutoSegNetLib.progress"):
        progress.handle({"event": "case", "stage": "verify", "case": "liver_001", "index": 2, "total": 9})
        for event in training_events(epochs=1):
            progress.handle(event)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["verify: 2/9 liver_001", "== train (configuration 3d_fullres, fold 0)",
                     epoch_line({**EPOCH, "epoch": 1, "epochs": 1}), "done (finished)."]


def test_a_failed_case_is_an_error_line_that_names_the_case(caplog):
    progress = TextProgress(io.StringIO(), live=False)
    with caplog.at_level(logging.INFO, logger="AutoSegNetLib.progress"):
        progress.handle({"event": "case", "stage": "predict", "case": "b", "index": 2, "total": 3, "status": "failed",
                         "error": "cannot read b_0000.nii.gz"})
    assert caplog.records[0].levelno == logging.ERROR and "case b failed: cannot read" in caplog.records[0].getMessage()


def test_json_mode_is_unchanged_and_text_mode_writes_nothing_to_stdout():
    stdout = io.StringIO()
    ProgressReporter("json", stdout).emit("case", case="a", index=1, total=2)
    assert stdout.getvalue().startswith('{"event": "case"')
    quiet = io.StringIO()
    ProgressReporter("text", quiet).emit("case", case="a", index=1, total=2)
    assert quiet.getvalue() == ""
