"""``autosegnet models list|show NAME|install NAME [--index URL_OR_FILE]``: the catalogue of pretrained models.

``list`` prints one line per model of the index, ``show`` every field of one, ``install`` downloads its zip
(resumable; size and sha256 from the index are checked) and installs it like ``download-model``. The index is the
one shipped with the engine (:data:`AutoSegNetLib.models.catalogue.DEFAULT_INDEX`) unless ``--index`` names a file
or an https/http/file URL. With ``--progress json``, ``list`` and ``show`` answer with a ``done`` event holding
``entries`` (each entry's fields).
"""

from __future__ import annotations

import argparse
import sys

from AutoSegNetLib.cli.download_model import DownloadProgress
from AutoSegNetLib.cli.install_model import add_install_options, install_options, report_installed
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.models.catalogue import CatalogueEntry, ModelIndex, install_entry, load_index
from AutoSegNetLib.models.sizes import format_size

ACTIONS = ("list", "show", "install")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="list the models, show one, or install one")
    parser.add_argument("name", nargs="?", default=None, help="the model's name (show, install)")
    parser.add_argument("--index", default=None, metavar="URL_OR_FILE",
                        help="model index to read: a JSON file or an https://, http:// or file:// URL (default: the "
                        "index shipped with AutoSegNet)")
    add_install_options(parser)


def run(args: argparse.Namespace, ctx) -> int:
    if args.action != "list" and not args.name:
        raise AutoSegNetError(
            f"`autosegnet models {args.action}` needs the model's name; see `autosegnet models list`."
        )
    index = load_index(args.index)
    if args.action == "install":
        entry = index.entry(args.name)
        progress = DownloadProgress(ctx.reporter, entry.url)
        try:
            installed = install_entry(entry, ctx.workspace, install_options(args), progress, ctx.stop)
        finally:
            progress.close()
        report_installed(ctx.reporter, "models", installed, model=entry.name, url=entry.url)
        return 0
    chosen = list(index.entries) if args.action == "list" else [index.entry(args.name)]
    if ctx.reporter.mode == "json":
        ctx.reporter.emit("done", stage="models", action=args.action, index=index.source,
                          entries=[e.to_dict() for e in chosen])
    else:
        sys.stdout.write(listing(index) if args.action == "list" else details(chosen[0]))
    return 0


def listing(index: ModelIndex) -> str:
    """One line per model: name, configuration, size, licence, description."""
    if not index.entries:
        return f"The model index {index.source} lists no models.\n{index.comment}\n".replace("\n\n", "\n")
    width = max(len(e.name) for e in index.entries)
    lines = [f"{e.name:<{width}}  {e.configuration:<12} {format_size(e.size):>7}  {e.licence:<14} {e.description}"
             for e in index.entries]
    return f"Models in {index.source}:\n" + "\n".join(lines) + "\n"


def details(entry: CatalogueEntry) -> str:
    """Every field of ``entry``, one per line."""
    fields = entry.to_dict()
    fields["size"] = f"{entry.size} bytes ({format_size(entry.size)})"
    return "".join(f"{key:<14} {value}\n" for key, value in fields.items())
