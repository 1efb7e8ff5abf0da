"""Exceptions for problems in the user's input, with messages that say what, where and how to fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AutoSegNetError(Exception):
    """A problem the user can fix (bad input, missing file, wrong setting).

    The CLI prints the message without a traceback and exits with status 2.
    """


class DatasetFormatError(AutoSegNetError):
    """A dataset.json, plans.json or similar file has a wrong, missing or unknown field."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> AutoSegNetError:
    """An error for a name that is not registered, listing what is."""
    known = sorted(known)
    return AutoSegNetError(
        f"Unknown {kind} {name!r}.{did_you_mean(name, known)} Known: {', '.join(known) or '(none)'}."
    )
