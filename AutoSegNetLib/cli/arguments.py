"""The argument parser every command uses, and helpers for options spelled in more than one way.

:class:`CommandParser` is an :class:`argparse.ArgumentParser` that only accepts option names written out in full:

- no abbreviations (``--save-prob`` is not ``--save-probabilities``; ``allow_abbrev=False``);
- no value glued to a short option (``-chk`` is never ``-c hk``, ``-device`` never ``-d evice``): a single-dash
  word that is not an option of the command is refused with a message, before argparse could split it;
- steps run after parsing (:func:`after_parse`) merge a value given two ways (``verify 4`` / ``verify -d 4``)
  and refuse contradictions, so a command's ``run`` sees one field per setting.

Options accepted for compatibility but without effect here leave a note (:func:`add_ignored`); ``main`` logs the
notes once logging is set up. Options with no equivalent are refused with one line naming the alternative
(:func:`add_refused`).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

#: Namespace attribute holding the notes of options accepted without effect.
NOTES_ATTRIBUTE = "compat_notes"

#: What argparse itself reads as a negative number rather than an option.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")

AfterParse = Callable[[argparse.Namespace, argparse.ArgumentParser], None]


class CommandParser(argparse.ArgumentParser):
    """An argument parser that accepts exact option names only and runs :func:`after_parse` steps.

    Sub-command parsers made with ``add_subparsers`` are of this class too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.after_parse_steps: list[AfterParse] = []

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """Parse, refusing unknown single-dash words first and running the after-parse steps last."""
        arg_list = list(sys.argv[1:] if args is None else args)
        if self._subparsers is None:  # a command's own parser knows every option that may follow
            self._refuse_unknown_single_dash(arg_list)
        namespace, extras = super().parse_known_args(arg_list, namespace)
        for step in self.after_parse_steps:
            step(namespace, self)
        return namespace, extras

    def _refuse_unknown_single_dash(self, arg_list: Sequence[str]) -> None:
        """argparse reads an unknown ``-xyz`` as ``-x yz`` (or as an abbreviation of ``-xyzzy``); refuse it."""
        for token in arg_list:
            if token == "--":
                return
            if not token.startswith("-") or token.startswith("--") or len(token) <= 2:
                continue
            if _NEGATIVE_NUMBER.match(token) or " " in token:
                continue  # values, as argparse reads them
            name = token.split("=", 1)[0]
            if name in self._option_string_actions:
                continue
            self.error(self._unknown_option_message(name))

    def _unknown_option_message(self, name: str) -> str:
        """Why ``name`` is refused: the options it resembles, or how to give a short option a value."""
        longer = [option for option in self._option_string_actions if len(option) > 2]
        close = difflib.get_close_matches(name, longer, n=2, cutoff=0.7)
        if close:
            return f"unknown option {name}; did you mean {' or '.join(close)}? (see {self.prog} --help)"
        short, rest = name[:2], name[2:]
        if short in self._option_string_actions:
            return (f"unknown option {name}; to give {short} the value {rest!r}, write '{short} {rest}' "
                    f"(see {self.prog} --help)")
        return f"unknown option {name} (see {self.prog} --help)"


def after_parse(parser: argparse.ArgumentParser, step: AfterParse) -> None:
    """Run ``step(namespace, parser)`` after ``parser`` has parsed its arguments (``parser.error`` to refuse)."""
    if not isinstance(parser, CommandParser):
        raise TypeError(f"{parser.prog}: after-parse steps need a CommandParser (build it with build_parser()).")
    parser.after_parse_steps.append(step)


def add_note(namespace: argparse.Namespace, text: str) -> None:
    """Remember ``text`` for ``main`` to log (an option accepted without effect, a translation made)."""
    notes = getattr(namespace, NOTES_ATTRIBUTE, None)
    if notes is None:
        notes = []
        setattr(namespace, NOTES_ATTRIBUTE, notes)
    notes.append(text)


def notes_of(namespace: argparse.Namespace) -> list[str]:
    """The notes left while parsing (empty when there are none)."""
    return list(getattr(namespace, NOTES_ATTRIBUTE, None) or [])


class _Refused(argparse.Action):
    """An option with no equivalent: parsing stops with ``message`` (a string or a function of the values)."""

    def __init__(self, option_strings: Sequence[str], dest: str, message: str | Callable[[Any], str] = "",
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, **kwargs)
        self.message = message

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> NoReturn:
        text = self.message(values) if callable(self.message) else self.message
        raise argparse.ArgumentError(self, text)


class _Ignored(argparse.Action):
    """An option accepted for compatibility that changes nothing here: leaves a note saying why."""

    def __init__(self, option_strings: Sequence[str], dest: str, reason: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, **kwargs)
        self.reason = reason

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        shown = "" if self.nargs == 0 else " " + " ".join(str(v) for v in _as_list(values))
        add_note(namespace, f"{option_string}{shown}: ignored; {self.reason}")


def add_refused(parser: argparse.ArgumentParser, *flags: str, message: str | Callable[[Any], str],
                nargs: int | str | None = None) -> None:
    """``flags`` (taking ``nargs`` values; 0 = a switch) stop parsing with a one-line ``message`` that names the
    alternative."""
    parser.add_argument(*flags, action=_Refused, message=message, nargs=nargs, help=argparse.SUPPRESS)


def add_ignored(parser: argparse.ArgumentParser, *flags: str, reason: str, nargs: int | str | None = None) -> None:
    """``flags`` are accepted and do nothing; a note gives the ``reason``."""
    parser.add_argument(*flags, action=_Ignored, reason=reason, nargs=nargs, help=argparse.SUPPRESS)


@dataclass(frozen=True)
class Slot:
    """A value that may be given as a positional argument or with ``flag`` (stored in ``flag_dest`` first)."""

    dest: str
    flag: str
    metavar: str


def add_positional_or_flag(parser: argparse.ArgumentParser, slots: Sequence[Slot], helps: Sequence[str],
                           flag_names: Sequence[Sequence[str]], required: bool = True,
                           too_many_hint: str = "", missing_hint: str = "") -> None:
    """Positional arguments ``slot.dest`` (in order) that may also be given with their flags instead.

    After parsing, each ``slot.dest`` holds the flag's value if given, else the next positional value; a
    positional value repeating a flag's value counts once. Too many values (the message ends with
    ``too_many_hint``), or (``required``) a missing one (``missing_hint``), stop parsing with a message.
    """
    for slot, help_text, names in zip(slots, helps, flag_names):
        parser.add_argument(slot.dest, nargs="?", default=None, metavar=slot.metavar,
                            help=f"{help_text} (or {names[0]} {slot.metavar})")
        parser.add_argument(*names, dest=_flag_dest(slot), default=None, metavar=slot.metavar,
                            help=f"the same as the positional {slot.metavar}")
    hints = (too_many_hint, missing_hint)
    after_parse(parser, lambda namespace, p: _merge_slots(namespace, p, list(slots), required, hints))


def _flag_dest(slot: Slot) -> str:
    return f"{slot.dest}_from_flag"


def _merge_slots(namespace: argparse.Namespace, parser: argparse.ArgumentParser, slots: list[Slot],
                 required: bool, hints: tuple[str, str]) -> None:
    positional = [getattr(namespace, s.dest) for s in slots if getattr(namespace, s.dest) is not None]
    merged: dict[str, Any] = {}
    for slot in slots:
        flagged = getattr(namespace, _flag_dest(slot), None)
        if hasattr(namespace, _flag_dest(slot)):
            delattr(namespace, _flag_dest(slot))
        if flagged is not None:
            if flagged in positional:
                positional.remove(flagged)  # the same value given both ways
            merged[slot.dest] = flagged
    for slot in slots:
        if merged.get(slot.dest) is None:
            merged[slot.dest] = positional.pop(0) if positional else None
    if positional:
        given = ", ".join(f"{s.metavar}={merged[s.dest]}" for s in slots)
        parser.error(f"too many values: {', '.join(map(str, positional))} besides {given}; each is given once, "
                     f"as a positional argument or with its flag{hints[0]}")
    missing = [s for s in slots if merged[s.dest] is None]
    if required and missing:
        parser.error("missing " + ", ".join(f"{s.metavar} (positional, or {s.flag} {s.metavar})" for s in missing)
                     + hints[1])
    for dest, value in merged.items():
        setattr(namespace, dest, value)


def add_dataset_argument(parser: argparse.ArgumentParser, help_text: str | None = None, example: str = "") -> None:
    """The dataset as a positional argument or ``-d/--dataset`` (nnU-Net's spelling); ``args.dataset`` either way.

    ``example``: a complete command line, shown when the dataset is missing (the other positionals may have
    taken its place)."""
    help_text = help_text or "dataset ID (4), folder name (Dataset004_Hippocampus) or name (Hippocampus)"
    add_positional_or_flag(parser, [Slot("dataset", "-d", "DATASET")], [help_text], [("-d", "--dataset")],
                           too_many_hint=" (a command works on one dataset here, while nnU-Net's -d takes "
                           "several: run the command once per dataset)",
                           missing_hint=f"; for example `{example}`" if example else "")


def _as_list(values: Any) -> list[Any]:
    if values is None:
        return []
    return list(values) if isinstance(values, list | tuple) else [values]
