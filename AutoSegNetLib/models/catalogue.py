"""The model catalogue: a JSON index of pretrained model zips that ``autosegnet models list|show|install`` reads.

Index format (``--index URL_OR_FILE``; default :data:`DEFAULT_INDEX`, shipped with the engine)::

    {"format": "autosegnet-model-index", "version": 1, "comment": "free text",
     "entries": [{"name": "hippocampus-3d", "url": "https://.../model.zip", "sha256": "<64 hex>", "size": 123456,
                  "labels": {"background": 0, "anterior": 1}, "channels": {"0": "MRI"},
                  "configuration": "3d_fullres", "citation": "...", "licence": "CC-BY-4.0",
                  "description": "..."}]}

Every field of an entry is required (``citation`` may be empty) and checked: an index with a wrong, missing or
unknown field is refused with an error naming the entry and the field. An entry's ``url`` and ``sha256`` must
have been checked by whoever added it: :func:`install_entry` refuses a download whose size or sha256 differ.

Python API for the Slicer module (no Qt, no network beyond the index and the zip): :func:`load_index`,
:func:`entries`, :meth:`ModelIndex.entry`, :func:`install_entry`.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from AutoSegNetLib.errors import AutoSegNetError, did_you_mean, unknown_name_error
from AutoSegNetLib.models.download import DownloadRequest, ProgressCallback, check_sha256, download_and_install
from AutoSegNetLib.models.install_any import Installed, InstallOptions
from AutoSegNetLib.models.url_sources import check_url, read_url
from AutoSegNetLib.utils.stop import StopRequest
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)

INDEX_FORMAT = "autosegnet-model-index"
INDEX_VERSION = 1
#: The index shipped with the engine (lists only entries whose URL and sha256 were checked; may be empty).
DEFAULT_INDEX = Path(__file__).with_name("model_index.json")
MAX_INDEX_BYTES = 4 * 10**6
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_INDEX_HINT = "download the index elsewhere and pass it with --index FILE"


@dataclass(frozen=True)
class CatalogueEntry:
    """One model of the index: where its zip is (``url``), what it must be (``sha256``, ``size`` in bytes), what it
    segments (``labels`` as in dataset.json, ``channels`` index -> name, ``configuration``) and under which terms
    (``citation``, ``licence``)."""

    name: str
    url: str
    sha256: str
    size: int
    labels: dict[str, Any]
    channels: dict[str, str]
    configuration: str
    citation: str
    licence: str
    description: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def download_request(self, install: InstallOptions | None = None) -> DownloadRequest:
        """The download of this entry's zip, checked against its size and sha256."""
        max_size = (install or InstallOptions()).max_size
        return DownloadRequest(self.url, sha256=self.sha256, size=self.size, max_size=max(max_size, self.size))


@dataclass(frozen=True)
class ModelIndex:
    """A loaded index: where it came from (``source``), its ``comment`` and its ``entries``."""

    source: str
    entries: tuple[CatalogueEntry, ...]
    comment: str = ""

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.entries]

    def entry(self, name: str) -> CatalogueEntry:
        """The entry called ``name``; an error listing the known names otherwise."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise unknown_name_error(f"model in the index {self.source}", name, self.names)


# ----- API ---------------------------------------------------------------------------------------------------------
def load_index(source: str | Path | None = None) -> ModelIndex:
    """The index at ``source``: an https/http/file URL or a file path (default: :data:`DEFAULT_INDEX`)."""
    source = str(source) if source is not None else str(DEFAULT_INDEX)
    if urllib.parse.urlsplit(source).scheme.lower() in ("https", "http", "file"):
        data = read_url(source, MAX_INDEX_BYTES, _INDEX_HINT)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise AutoSegNetError(f"Model index {path} does not exist; pass a file or an https:// URL with --index.")
        data = path.read_bytes()
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AutoSegNetError(f"Model index {source} is not valid JSON ({error}).") from None
    return parse_index(parsed, source)


def entries(source: str | Path | None = None) -> list[CatalogueEntry]:
    """The entries of the index at ``source`` (see :func:`load_index`)."""
    return list(load_index(source).entries)


def install_entry(entry: CatalogueEntry, workspace: Workspace, options: InstallOptions | None = None,
                  progress: ProgressCallback | None = None, stop: StopRequest | None = None) -> Installed:
    """Download ``entry``'s zip (resumable; size and sha256 checked) and install it into ``workspace``."""
    log.info("Installing %s (%s, licence %s) from %s", entry.name, entry.configuration, entry.licence, entry.url)
    if entry.citation:
        log.info("Please cite: %s", entry.citation)
    return download_and_install(entry.download_request(options), workspace, options, progress, stop)


# ----- format ------------------------------------------------------------------------------------------------------
def parse_index(data: Any, source: str) -> ModelIndex:
    """A :class:`ModelIndex` from the parsed JSON ``data``; errors name ``source``, the entry and the field."""
    where = f"Model index {source}"
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise AutoSegNetError(f"{where}: field 'format' must be {INDEX_FORMAT!r}; is this a model index?")
    if data.get("version") != INDEX_VERSION:
        raise AutoSegNetError(f"{where}: version {data.get('version')!r} is not supported (this engine reads "
                              f"{INDEX_VERSION}); update AutoSegNet.")
    _no_unknown(data, {"format", "version", "comment", "entries"}, where)
    if not isinstance(data.get("entries"), list):
        raise AutoSegNetError(f"{where}: field 'entries' must be a list of models (it may be empty).")
    parsed = tuple(parse_entry(item, f"{where}: entry {i}") for i, item in enumerate(data["entries"]))
    names = [entry.name for entry in parsed]
    twins = sorted({n for n in names if names.count(n) > 1})
    if twins:
        raise AutoSegNetError(
            f"{where}: several entries are called {', '.join(map(repr, twins))}; names must be unique."
        )
    return ModelIndex(source, parsed, str(data.get("comment", "")))


def parse_entry(item: Any, where: str) -> CatalogueEntry:
    """One checked entry; ``where`` names it in errors (``index: entry 2 ('liver')``)."""
    if not isinstance(item, dict):
        raise AutoSegNetError(f"{where} must be an object with the fields {', '.join(_FIELD_NAMES)}.")
    if isinstance(item.get("name"), str):
        where = f"{where} ({item['name']!r})"
    _no_unknown(item, set(_FIELD_NAMES), where)
    missing = [name for name in _FIELD_NAMES if name not in item]
    if missing:
        raise AutoSegNetError(f"{where}: field(s) {', '.join(map(repr, missing))} missing; every entry needs "
                              f"{', '.join(_FIELD_NAMES)}.")
    values = {name: _CHECKS[name](item[name], f"{where}: field {name!r}") for name in _FIELD_NAMES}
    return CatalogueEntry(**values)


def _no_unknown(data: dict, known: set[str], where: str) -> None:
    for key in data:
        if key not in known:
            raise AutoSegNetError(f"{where}: unknown field {key!r}.{did_you_mean(key, known)} "
                                  f"Fields: {', '.join(sorted(known))}.")


def _text(value: Any, where: str, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise AutoSegNetError(f"{where} must be a{'' if empty else ' non-empty'} string, got {value!r}.")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise AutoSegNetError(f"{where} must be a name of letters, digits, '.', '_' and '-', got {value!r}.")
    return value


def _url(value: Any, where: str) -> str:
    try:
        return check_url(_text(value, where))
    except AutoSegNetError as error:
        raise AutoSegNetError(f"{where}: {error}") from None


def _sha256(value: Any, where: str) -> str:
    return check_sha256(value if isinstance(value, str) else repr(value), where)


def _size(value: Any, where: str) -> int:
    if type(value) is not int or value <= 0:
        raise AutoSegNetError(f"{where} must be the zip's size in bytes (a positive whole number), got {value!r}.")
    return value


def _labels(value: Any, where: str) -> dict[str, Any]:
    def is_label(v: Any) -> bool:
        return type(v) is int or (isinstance(v, list) and bool(v) and all(type(x) is int for x in v))

    if not isinstance(value, dict) or not value or not all(is_label(v) for v in value.values()):
        raise AutoSegNetError(f"{where} must map label names to values as in dataset.json, e.g. "
                              f'{{"background": 0, "liver": 1}}; got {value!r}.')
    return dict(value)


def _channels(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not value or \
            not all(str(k).isdigit() and isinstance(v, str) for k, v in value.items()):
        raise AutoSegNetError(f'{where} must map channel numbers to names as in dataset.json, e.g. {{"0": "CT"}}; '
                              f"got {value!r}.")
    return dict(value)


_CHECKS = {
    "name": _name, "url": _url, "sha256": _sha256, "size": _size, "labels": _labels, "channels": _channels,
    "configuration": _text, "citation": lambda v, w: _text(v, w, empty=True), "licence": _text, "description": _text,
}
_FIELD_NAMES = tuple(f.name for f in fields(CatalogueEntry))
