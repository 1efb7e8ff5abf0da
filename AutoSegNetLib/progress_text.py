"""Progress events as a person reads them: live bars in a terminal, plain readable lines elsewhere.

:class:`TextProgress` turns the engine's progress events (see :mod:`AutoSegNetLib.progress`) into
- on a terminal (the stream is a TTY): a tqdm bar per countable stage (cases of convert / verify / fingerprint /
  preprocess / predict / evaluate; iterations within the epoch and epochs overall while training) with its ETA,
  and after each epoch one line: epoch, train/val loss, pseudo-Dice per label name, learning rate, epoch time;
- anywhere else (a log file, a pipe, CI): the same information as plain log lines, one per case or epoch
  (iteration events are left out; the epoch line sums them up).
``--progress json`` does not come here: scripts and the Slicer module read the JSON events.
"""

from __future__ import annotations

import logging
import os
from typing import Any, TextIO

log = logging.getLogger("AutoSegNetLib.progress")


class TextProgress:
    """Renders events for a person; ``live`` (bars) defaults to whether ``stream`` is a terminal."""

    def __init__(self, stream: TextIO, live: bool | None = None) -> None:
        self.stream = stream
        self.live = _is_tty(stream) if live is None else live
        self._bars: dict[str, Any] = {}

    def handle(self, record: dict[str, Any]) -> None:
        kind = record.get("event")
        if kind == "stage":
            self._close()
            self._line(stage_line(record))
        elif kind == "case":
            self._case(record)
        elif kind == "iteration":
            self._iteration(record)
        elif kind == "epoch":
            self._advance("epochs", record.get("epoch"), record.get("epochs"), "epochs")
            self._line(epoch_line(record))
        elif kind in ("done", "error"):
            self._close()
            self._line(end_line(record), error=kind == "error")
        elif record.get("message"):
            self._line(f"{kind}: {record['message']}")

    def close(self) -> None:
        self._close()

    # ----- events --------------------------------------------------------------------------------------------
    def _case(self, record: dict[str, Any]) -> None:
        done = record.get("index", record.get("done"))
        total = record.get("total")
        stage = record.get("stage") or "cases"
        if record.get("status") == "failed":
            self._line(f"{stage}: case {record.get('case')} failed: {record.get('error', '')}", error=True)
        if self.live and isinstance(done, int) and isinstance(total, int):
            self._advance("cases", done, total, stage)
        elif not self.live:
            self._line(case_line(record))

    def _iteration(self, record: dict[str, Any]) -> None:
        if not self.live:
            return
        self._advance("epochs", (record.get("epoch") or 1) - 1, record.get("epochs"), "epochs")
        self._advance("iterations", record.get("iteration"), record.get("iterations"),
                      f"epoch {record.get('epoch')}", restart=record.get("iteration") == 1)

    # ----- output ---------------------------------------------------------------------------------------------
    def _advance(self, key: str, done: Any, total: Any, label: str, restart: bool = False) -> None:
        """Move bar ``key`` to ``done`` of ``total`` (creating it, or a new one when the total changed)."""
        if not self.live or not isinstance(done, (int, float)) or not isinstance(total, (int, float)):
            return
        bar = self._bars.get(key)
        if bar is None or bar.total != total or restart or done < bar.n:
            if bar is not None:
                bar.close()
            bar = self._bars[key] = _new_bar(self.stream, total, label, position=len(self._bars))
        bar.set_description_str(label, refresh=False)
        bar.update(done - bar.n)
        if bar.n >= bar.total:
            bar.refresh()  # tqdm skips redraws closer than 0.1 s; the last one must show

    def _line(self, text: str, error: bool = False) -> None:
        if not text:
            return
        if self.live:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream)
        else:
            (log.error if error else log.info)("%s", text)

    def _close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


# ----- the lines ------------------------------------------------------------------------------------------------
def stage_line(record: dict[str, Any]) -> str:
    """``== preprocess: <message>``, or the stage's plain fields when it has no message."""
    name = record.get("stage") or record.get("name") or "stage"
    if record.get("message"):
        return f"== {name}: {record['message']}"
    details = ", ".join(f"{k} {_short(v)}" for k, v in record.items()
                        if k not in ("event", "time", "stage", "name") and not isinstance(v, (list, dict)))
    return f"== {name}" + (f" ({details})" if details else "")


def case_line(record: dict[str, Any]) -> str:
    done, total = record.get("index", record.get("done")), record.get("total")
    count = f" {done}/{total}" if done is not None and total else ""
    return f"{record.get('stage') or 'case'}:{count} {record.get('case', '')}".rstrip()


def epoch_line(record: dict[str, Any]) -> str:
    """``epoch 3/100  train loss 0.5120  val loss 0.4981  Dice liver 0.912, tumour 0.554  lr 0.0098  41.2 s``."""
    parts = [f"epoch {record.get('epoch')}/{record.get('epochs')}"]
    for key, name in (("train_loss", "train loss"), ("val_loss", "val loss")):
        if isinstance(record.get(key), (int, float)):
            parts.append(f"{name} {record[key]:.4f}")
    dice = record.get("pseudo_dice")
    if isinstance(dice, dict) and dice:
        parts.append("Dice " + ", ".join(f"{label} {_dice(value)}" for label, value in dice.items()))
    if isinstance(record.get("lr"), (int, float)):
        parts.append(f"lr {record['lr']:.3g}")
    if isinstance(record.get("epoch_s"), (int, float)):
        parts.append(f"{record['epoch_s']:.1f} s")
    return "  ".join(parts)


def end_line(record: dict[str, Any]) -> str:
    if record.get("event") == "error":
        return f"error: {record.get('message', '')}"
    status = record.get("status")
    message = record.get("message")
    return " ".join(x for x in ("done" + (f" ({status})" if status else "") + ".", message or "") if x)


def _dice(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and value == value else "n/a"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _is_tty(stream: TextIO) -> bool:
    """A terminal with a width (a pseudo-terminal of 0 columns, e.g. under `script`, shows no bar: lines then)."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):
        return False


def _new_bar(stream: TextIO, total: float, label: str, position: int):
    from tqdm import tqdm  # only when a terminal shows bars

    return tqdm(total=total, desc=label, file=stream, position=position, leave=False, dynamic_ncols=True,
                unit="it" if label.startswith("epoch ") else "", bar_format=None)
