"""Who may use ``autosegnet web``: the bearer tokens of ``autosegnet serve``, checked on every request.

Tokens are ``{token: name}`` as :func:`AutoSegNetLib.server.config.parse_tokens` returns them. A browser opens
``http://HOST:PORT/?token=TOKEN`` once; that answer sets an HttpOnly, SameSite=Strict cookie which carries the
token on every later request (static files, downloads, the ``/ws`` websocket). Scripts may send
``Authorization: Bearer TOKEN`` instead. Any other request gets 401 before trame sees it.

:func:`decide` is the whole rule and is pure (tested without trame); it reads and compares tokens with the
server's own ``bearer_token`` and ``match_token`` (:mod:`AutoSegNetLib.server.config`). :func:`install` puts
it in front of the trame server as an aiohttp middleware through trame's ``controller.on_server_bind``: wslink's
``start_webserver`` (wslink/server.py) creates its ``WebAppServer`` (wslink/backends/aiohttp/__init__.py) and
hands it to ``CoreServer.set_server`` (trame_server/protocol.py), which calls ``on_server_bind`` before
``WebAppServer.start()`` freezes the aiohttp application. aiohttp is imported only inside :func:`middleware`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.server.config import bearer_token, check_tls_files, match_token

log = logging.getLogger(__name__)

COOKIE_NAME = "autosegnet_web_token"
QUERY_PARAMETER = "token"
UNAUTHORIZED_TEXT = ("401 Unauthorized: autosegnet web needs a token. Open http://HOST:PORT/?token=TOKEN once "
                     "(a cookie then keeps it), or send the header 'Authorization: Bearer TOKEN'. TOKEN is one of "
                     "the server's --token-file / AUTOSEGNET_SERVER_TOKENS lines NAME:TOKEN.\n")


@dataclass(frozen=True)
class Decision:
    """The answer to one request: ``client`` is the NAME of the token it carried (None: refuse it with 401);
    ``cookie`` is the token to store in the browser's cookie (given in the URL), else None."""

    client: str | None
    cookie: str | None = None

    @property
    def allowed(self) -> bool:
        return self.client is not None


def decide(tokens: Mapping[str, str], *, query_token: str | None = None, authorization: str | None = None,
           cookie: str | None = None) -> Decision:
    """Allow or refuse one request from what it carries: ``?token=``, the ``Authorization`` header, the cookie.

    The first of them that is present (in that order) decides: a wrong token in the URL is refused even beside
    a valid cookie, so a mistyped link fails visibly. A valid URL token is also returned as the cookie to set.
    """
    for source, candidate in (("query", query_token), ("header", bearer_token(authorization)), ("cookie", cookie)):
        if candidate:
            client = match_token(candidate, tokens)
            return Decision(client, candidate if source == "query" and client is not None else None)
    return Decision(None)


def tls_context(certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext | None:
    """A server TLS context from PEM files (both or neither; None: plain http)."""
    if not check_tls_files(certfile, keyfile):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(certfile), str(keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise AutoSegNetError(f"Cannot load the TLS certificate {certfile} with the key {keyfile}: "
                              f"{getattr(exc, 'strerror', None) or exc}. Give PEM files (--certfile, --keyfile)."
                              ) from exc
    return context


def middleware(tokens: Mapping[str, str]) -> Callable:
    """An aiohttp middleware that answers 401 (:data:`UNAUTHORIZED_TEXT`) to requests :func:`decide` refuses
    and sets the cookie when the URL carried a valid token."""
    from aiohttp import web

    @web.middleware
    async def require_token(request: web.Request, handler: Callable) -> web.StreamResponse:
        decision = decide(tokens, query_token=request.query.get(QUERY_PARAMETER),
                          authorization=request.headers.get("Authorization"), cookie=request.cookies.get(COOKIE_NAME))
        if not decision.allowed:
            log.info("Refused %s %s from %s: no valid token.", request.method, request.path, request.remote)
            return web.Response(status=401, text=UNAUTHORIZED_TEXT, headers={"WWW-Authenticate": "Bearer"})
        if decision.cookie is None:
            return await handler(request)
        log.info("Token of %s accepted from %s; cookie set.", decision.client, request.remote)
        try:
            response = await handler(request)
        except web.HTTPException as answer:  # e.g. wslink's redirect of / to index.html: still an answer
            _set_cookie(answer, decision.cookie, request.secure)
            raise
        _set_cookie(response, decision.cookie, request.secure)
        return response

    return require_token


def _set_cookie(response: Any, token: str, secure: bool) -> None:
    if response.prepared:  # a websocket that already ran: its headers are gone
        return
    response.set_cookie(COOKIE_NAME, token, path="/", httponly=True, samesite="Strict", secure=secure or None)
    # The page's URL holds the token: keep it out of Referer headers.
    response.headers["Referrer-Policy"] = "no-referrer"


def install(server: Any, tokens: Mapping[str, str], tls: ssl.SSLContext | None = None) -> None:
    """Make the trame ``server`` (before ``server.start()``) require ``tokens`` (if any) and serve ``tls``.

    Fails closed: if trame never binds the aiohttp application (another wslink backend, ``TRAME_BACKEND``,
    a reverse connection, a trame that changed), the server stops as soon as it is ready, with an error.
    """
    tokens = dict(tokens)
    bound: list[bool] = []

    def bind(web_app: Any) -> None:
        app = getattr(web_app, "app", None)
        if tokens and not hasattr(app, "middlewares"):
            raise AutoSegNetError(f"autosegnet web: tokens need trame's aiohttp backend, not {type(web_app)!r}; "
                                  "unset TRAME_BACKEND.")
        if tokens:
            app.middlewares.insert(0, middleware(tokens))  # outermost: before wslink's own middlewares
        if tls is not None:
            web_app.config["ssl"] = tls  # read by WebAppServer.start() through its ssl_context property
        bound.append(True)

    def check_bound(**_: Any) -> None:
        if not bound:
            raise AutoSegNetError("autosegnet web: trame started without calling on_server_bind, so the token "
                                  "check and TLS are not in place; stopping.")

    server.controller.on_server_bind.add(bind)
    if tokens or tls is not None:
        server.controller.on_server_ready.add(check_bound)
