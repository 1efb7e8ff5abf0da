"""The page's form fields as values: numbers typed by a person, with errors that say what to type."""

from __future__ import annotations

from AutoSegNetLib.errors import AutoSegNetError


def number(text, field: str, kind: type, blank=None, required: bool = False):
    """``text`` of a form field as ``kind`` (``blank`` when empty, unless ``required``); a clear error otherwise."""
    text = str(text if text is not None else "").strip()
    if not text and required:
        raise AutoSegNetError(f"{field}: enter a value.")
    if not text:
        return blank
    try:
        return kind(text)
    except ValueError:
        wanted = "a whole number" if kind is int else "a number"
        raise AutoSegNetError(f"{field} must be {wanted}, got {text!r}.") from None
