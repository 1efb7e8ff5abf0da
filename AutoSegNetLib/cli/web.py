"""``autosegnet web --workspace DIR``: the browser UI (preview) on http://127.0.0.1:8080.

Built on trame-slicer (its own environment: ``make web-test`` shows how; docs/decisions/0021). There is no
authentication yet, so it listens only on a loopback address; reach it from elsewhere through an SSH tunnel.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.server.config import is_loopback

log = logging.getLogger(__name__)
INSTALL_HINT = ("pip install torch==2.13.0 'trame-slicer[standalone]==2.0.0' && pip install -e '.[test]' "
                "-c constraints.txt, in a separate environment (see `make web-test` and "
                "docs/decisions/0021-web-ui-dependencies.md)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="loopback interface to listen on (default: %(default)s;"
                        " other interfaces are refused: there are no tokens yet)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")


def check_loopback(host: str) -> None:
    """Refuse anything but a loopback address or ``localhost`` (the web UI has no authentication yet)."""
    if not is_loopback(host):
        raise AutoSegNetError(f"--host {host}: autosegnet web has no authentication yet, so it only listens on "
                              "127.0.0.1 / ::1 / localhost. Use an SSH tunnel (ssh -L 8080:127.0.0.1:8080 HOST).")


def run(args: argparse.Namespace, ctx) -> int:
    check_loopback(args.host)
    if not args.workspace:
        raise AutoSegNetError("autosegnet web needs --workspace DIR (cases are exported and trained there).")
    try:
        import trame  # noqa: F401
        import trame_slicer  # noqa: F401
    except ImportError as exc:
        raise AutoSegNetError(f"autosegnet web needs trame-slicer ({exc.name} is missing): {INSTALL_HINT}.") from exc
    from AutoSegNetLib.web import ensure_scene_glue_importable

    ensure_scene_glue_importable()
    from AutoSegNetLib.web.ui import build_server

    workspace = Path(args.workspace).expanduser().resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    server = build_server(workspace)
    log.info("AutoSegNet web UI on http://%s:%d (workspace %s).", args.host, args.port, workspace)
    server.start(port=args.port, host=args.host, open_browser=False)
    return 0
