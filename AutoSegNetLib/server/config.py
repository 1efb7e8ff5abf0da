"""The server's settings and its bearer tokens.

Tokens come from a file (``NAME:TOKEN`` per line, ``#`` comments) or from a string in the same form with
commas between entries (the CLI reads it from ``AUTOSEGNET_SERVER_TOKENS``). ``NAME`` is the client's
namespace: its own workspace on the server, which no other token can read. A server without tokens serves one
namespace (``local``) and may only listen on the loopback interface.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError

MIN_TOKEN_LENGTH = 16
LOCAL_CLIENT = "local"
CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ServerConfig:
    """``workspace``: the server's root (one workspace per client under ``clients/``); ``tokens``: token ->
    client name (empty: no authentication, localhost only); ``max_upload_bytes``: the largest request body;
    ``min_free_gpu_mb``: free GPU memory a prediction needs to start beside a training."""

    workspace: Path
    host: str = "127.0.0.1"
    port: int = 8765
    tokens: dict[str, str] = field(default_factory=dict)
    max_upload_bytes: int = 2 * 1024**3
    min_free_gpu_mb: int = 4096
    certfile: Path | None = None
    keyfile: Path | None = None
    python: str | None = None  # the interpreter that runs engine jobs (default: this one)
    poll_interval_s: float = 0.2

    def __post_init__(self) -> None:
        if not self.tokens and not is_loopback(self.host):
            raise AutoSegNetError(
                f"Refusing to listen on {self.host} without authentication: anyone who can reach it could read "
                "and write the workspace. Give tokens with --token-file FILE (lines NAME:TOKEN) or the "
                "AUTOSEGNET_SERVER_TOKENS environment variable, or listen on 127.0.0.1.")
        check_tls_files(self.certfile, self.keyfile)

    @property
    def authenticated(self) -> bool:
        return bool(self.tokens)


def check_tls_files(certfile: Path | None, keyfile: Path | None) -> bool:
    """Both TLS files or neither, and the ones given exist (``serve`` and ``web``); True when TLS is on."""
    if (certfile is None) != (keyfile is None):
        raise AutoSegNetError("TLS needs both --certfile and --keyfile (or neither, behind a reverse proxy).")
    for path in (certfile, keyfile):
        if path is not None and not Path(path).is_file():
            raise AutoSegNetError(f"TLS file {path} not found.")
    return certfile is not None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header value; None for no header or another scheme."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def match_token(candidate: str, tokens: Mapping[str, str]) -> str | None:
    """The client NAME of ``candidate`` in ``tokens`` (token -> name), or None.

    Compares with every token in constant time (:func:`hmac.compare_digest`) and does not stop at a match, so
    the time taken tells nothing about which token, or how much of one, was right.
    """
    given = candidate.encode("utf-8")
    found = None
    for token, name in tokens.items():
        if hmac.compare_digest(given, token.encode("utf-8")):
            found = name
    return found


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_tokens(text: str, source: str) -> dict[str, str]:
    """``NAME:TOKEN`` entries (one per line or comma-separated) -> ``{token: name}``; errors name ``source``."""
    tokens: dict[str, str] = {}
    entries = [e.strip() for line in text.splitlines() for e in line.split(",")]
    for number, entry in enumerate(e for e in entries if e and not e.startswith("#")):
        name, sep, token = entry.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not CLIENT_NAME.match(name):
            raise AutoSegNetError(f"{source}, entry {number + 1}: expected NAME:TOKEN with NAME made of letters, "
                                  "digits, '-' and '_' (e.g. 'radiology:3f9c...').")
        if len(token) < MIN_TOKEN_LENGTH:
            raise AutoSegNetError(f"{source}, entry {number + 1} ({name}): the token is shorter than "
                                  f"{MIN_TOKEN_LENGTH} characters; make one with `python -c \"import secrets; "
                                  "print(secrets.token_urlsafe(32))\"`.")
        if token in tokens:
            raise AutoSegNetError(f"{source}: the token of {name} is also the token of {tokens[token]}.")
        tokens[token] = name
    return tokens


def read_token_file(path: Path) -> dict[str, str]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise AutoSegNetError(f"Cannot read the token file {path}: {exc.strerror or exc}.") from exc
    tokens = parse_tokens(text, str(path))
    if not tokens:
        raise AutoSegNetError(f"The token file {path} holds no NAME:TOKEN line.")
    return tokens
