"""``autosegnet serve --workspace DIR``: run the engine's jobs for remote clients (e.g. Slicer on a desktop).

Listens on 127.0.0.1:8765 by default. Beyond localhost it needs tokens: ``--token-file FILE`` (lines
``NAME:TOKEN``; each name is a separate workspace under ``DIR/clients/``) or ``AUTOSEGNET_SERVER_TOKENS``
(``NAME:TOKEN,NAME:TOKEN``). TLS with ``--certfile``/``--keyfile``, or behind a reverse proxy (README).
OpenAPI documentation at ``/docs``. Needs the ``server`` extra (``pip install autosegnet[server]``).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError

log = logging.getLogger(__name__)
TOKENS_VARIABLE = "AUTOSEGNET_SERVER_TOKENS"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s; "
                        "0.0.0.0 for every interface, which needs tokens)")
    parser.add_argument("--port", type=int, default=8765, help="port (default: %(default)s)")
    parser.add_argument("--token-file", type=Path, help=f"lines NAME:TOKEN (default: ${TOKENS_VARIABLE})")
    parser.add_argument("--certfile", type=Path, help="TLS certificate (PEM)")
    parser.add_argument("--keyfile", type=Path, help="TLS private key (PEM)")
    parser.add_argument("--max-upload-mb", type=int, default=2048, help="largest upload (default: %(default)s)")
    parser.add_argument("--min-free-gpu-mb", type=int, default=4096, help="free GPU memory a prediction needs to "
                        "run beside a training (default: %(default)s)")


def read_tokens(token_file: Path | None) -> dict[str, str]:
    """``{token: name}`` from ``--token-file`` if given, else from ``$AUTOSEGNET_SERVER_TOKENS`` (empty: none).

    Shared with ``autosegnet web``, which takes the same tokens.
    """
    from AutoSegNetLib.server.config import parse_tokens, read_token_file

    if token_file is not None:
        return read_token_file(token_file)
    return parse_tokens(os.environ.get(TOKENS_VARIABLE, ""), f"${TOKENS_VARIABLE}")


def run(args: argparse.Namespace, ctx) -> int:
    try:
        import uvicorn

        from AutoSegNetLib.server.app import create_app
    except ImportError as exc:
        raise AutoSegNetError(f"autosegnet serve needs FastAPI and uvicorn ({exc.name} is missing): "
                              "pip install 'autosegnet[server]'.") from exc
    from AutoSegNetLib.server.config import ServerConfig

    if not args.workspace:
        raise AutoSegNetError("autosegnet serve needs --workspace DIR (the clients' workspaces go under it).")
    tokens = read_tokens(args.token_file)
    config = ServerConfig(Path(args.workspace).expanduser().resolve(), args.host, args.port, tokens,
                          args.max_upload_mb * 2**20, args.min_free_gpu_mb, args.certfile, args.keyfile)
    config.workspace.mkdir(parents=True, exist_ok=True)
    scheme = "https" if config.certfile else "http"
    log.info("AutoSegNet server on %s://%s:%d (API docs at /docs); %s.", scheme, config.host, config.port,
             f"{len(tokens)} token(s)" if tokens else "no tokens: this computer only")
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info",
                ssl_certfile=str(config.certfile) if config.certfile else None,
                ssl_keyfile=str(config.keyfile) if config.keyfile else None)
    return 0
