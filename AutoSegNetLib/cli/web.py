"""``autosegnet web --workspace DIR``: the browser UI (the annotate-correct-retrain loop) on http://127.0.0.1:8080.

Built on trame-slicer (its own environment: ``make web-test`` shows how; docs/decisions/0021). It takes the
same tokens as ``autosegnet serve``: ``--token-file FILE`` (lines ``NAME:TOKEN``) or ``AUTOSEGNET_SERVER_TOKENS``
(``NAME:TOKEN,NAME:TOKEN``). Without tokens it listens only on a loopback address (reach it from elsewhere
through an SSH tunnel). With tokens it may listen anywhere and every request needs one: open
``http://HOST:PORT/?token=TOKEN`` once (an HttpOnly cookie keeps it) or send ``Authorization: Bearer TOKEN``
(:mod:`AutoSegNetLib.web.auth`). All tokens share the one workspace. TLS with ``--certfile``/``--keyfile``, or
behind a reverse proxy that forwards websockets.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from AutoSegNetLib.cli.serve import TOKENS_VARIABLE, read_tokens
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.server.config import is_loopback

log = logging.getLogger(__name__)
INSTALL_HINT = ("pip install torch==2.13.0 'trame-slicer[standalone]==2.0.0' && pip install -e '.[test]' "
                "-c constraints.txt, in a separate environment (see `make web-test` and "
                "docs/decisions/0021-web-ui-dependencies.md)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s; "
                        "anything but loopback, e.g. 0.0.0.0, needs tokens)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    parser.add_argument("--token-file", type=Path, help=f"lines NAME:TOKEN, as for autosegnet serve (default: "
                        f"${TOKENS_VARIABLE}); every request then needs a token: open http://HOST:PORT/?token=TOKEN "
                        "once in the browser (a cookie keeps it) or send 'Authorization: Bearer TOKEN'")
    parser.add_argument("--certfile", type=Path, help="TLS certificate (PEM), with --keyfile: serve https and wss")
    parser.add_argument("--keyfile", type=Path, help="TLS private key (PEM)")


def check_loopback(host: str) -> None:
    """Refuse anything but a loopback address or ``localhost`` (the check for a web UI without tokens)."""
    if not is_loopback(host):
        raise AutoSegNetError(f"--host {host}: without tokens autosegnet web has no authentication, so it only "
                              "listens on 127.0.0.1 / ::1 / localhost. Give tokens with --token-file FILE (lines "
                              f"NAME:TOKEN) or ${TOKENS_VARIABLE}, or use an SSH tunnel "
                              "(ssh -L 8080:127.0.0.1:8080 HOST).")


def check_host(host: str, tokens: dict[str, str]) -> None:
    """Any ``host`` with tokens (every request is then checked); only loopback without them."""
    if not tokens:
        check_loopback(host)


def run(args: argparse.Namespace, ctx) -> int:
    tokens = read_tokens(args.token_file)
    check_host(args.host, tokens)
    if not args.workspace:
        raise AutoSegNetError("autosegnet web needs --workspace DIR (cases are exported and trained there).")
    from AutoSegNetLib.web.auth import install, tls_context

    tls = tls_context(args.certfile, args.keyfile)
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
    install(server, tokens, tls)
    url = f"{'https' if tls else 'http'}://{args.host}:{args.port}/"
    log.info("AutoSegNet web UI on %s (workspace %s); %s.", url, workspace,
             f"{len(tokens)} token(s): open {url}?token=TOKEN once" if tokens else "no tokens: this computer only")
    server.start(port=args.port, host=args.host, open_browser=False)
    return 0
