"""What the live app trusts from the network (docs/security.md): paths, hosts, tokens, gzip.

- **Confinement**: every run path that arrives from the browser (a callback's input or state) is
  resolved (symlinks and ``..`` included) and must name a run directory inside the served
  folder; anything else is refused with HTTP 403 and logged on the ``fedfleet.serve`` logger.
- **Host**: a loopback address is the default. Anything else must be asked for explicitly
  (``fedfleet serve --host 0.0.0.0 --allow-remote``), prints a warning and needs a token: every
  request must carry it (``?token=`` once, after which a cookie holds it, or an
  ``Authorization: Bearer`` header), else HTTP 401.
- **Compression**: responses over 1 kB are gzip-compressed when the browser accepts it (the
  figures of a large run are several MB of JSON per refresh).
"""

from __future__ import annotations

import gzip
import hmac
import ipaddress
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("fedfleet.serve")

TOKEN_COOKIE = "fedfleet_token"
TOKEN_ENV = "FEDFLEET_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16
COMPRESS_MIN_BYTES = 1024
COMPRESSIBLE = ("application/json", "text/", "application/javascript", "image/svg+xml")


class Refused(Exception):
    """A path from the browser that is not a run inside the served folder."""


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def confine(root: Path, value: Any) -> Path:
    """``value`` (from the browser) as a run directory inside ``root``, or :class:`Refused`.

    A run is a direct child of ``root`` or a trial of a sweep folder in ``root``
    (``root/SWEEP/TRIAL``); symbolic links are followed before the check."""
    root = root.resolve()
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _refuse(root, value, "not a path")
    p = Path(value)
    resolved = (p if p.is_absolute() else root / p).resolve()
    try:
        rel = resolved.relative_to(root)
    except ValueError:
        raise _refuse(root, value, "outside the served folder") from None
    if not 1 <= len(rel.parts) <= 2 or (len(rel.parts) == 2
                                         and not (resolved.parent / "sweep.json").is_file()):
        raise _refuse(root, value, "not a run directory of the served folder")
    return resolved  # it may be gone (a finished run's .partial folder): readers see no files


def _refuse(root: Path, value: Any, why: str) -> Refused:
    log.warning("refused a path from the browser (%s; serving %s): %r", why, root,
                str(value)[:300])
    return Refused(why)


def new_token() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def token_from_env() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


def install(server: Any, token: str | None) -> None:
    """Token check (when ``token`` is set) and gzip on the app's Flask ``server``."""
    import flask

    if token is not None:
        expected = token.encode()

        def ok(candidate: str | None) -> bool:
            return candidate is not None and hmac.compare_digest(candidate.encode(), expected)

        @server.before_request
        def _check_token() -> Any:
            req = flask.request
            auth = req.headers.get("Authorization", "")
            if ok(req.cookies.get(TOKEN_COOKIE)) or (
                    auth.startswith("Bearer ") and ok(auth[len("Bearer "):].strip())):
                return None
            if ok(req.args.get("token")):
                flask.g.fedfleet_set_cookie = True
                return None
            log.warning("refused a request without a valid token from %s: %s %s",
                        req.remote_addr, req.method, req.path)
            return flask.Response("FedFleet dashboard: a token is required "
                                  "(open the URL that `fedfleet serve` printed)\n", status=401,
                                  mimetype="text/plain")

        @server.after_request
        def _set_cookie(resp: Any) -> Any:
            if flask.g.get("fedfleet_set_cookie"):
                resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
            return resp

    @server.errorhandler(Refused)
    def _refused(exc: Refused) -> Any:
        return flask.Response(f"refused: {exc}\n", status=403, mimetype="text/plain")

    @server.after_request
    def _gzip(resp: Any) -> Any:
        accept = flask.request.headers.get("Accept-Encoding", "")
        if ("gzip" not in accept.lower() or resp.direct_passthrough or resp.is_streamed
                or resp.status_code < 200 or resp.status_code >= 300
                or "Content-Encoding" in resp.headers
                or not (resp.mimetype or "").startswith(COMPRESSIBLE)):
            return resp
        data = resp.get_data()
        if len(data) < COMPRESS_MIN_BYTES:
            return resp
        resp.set_data(gzip.compress(data, compresslevel=5))
        resp.headers["Content-Encoding"] = "gzip"
        resp.headers["Content-Length"] = str(len(resp.get_data()))
        resp.vary.add("Accept-Encoding")
        return resp


__all__ = ["confine", "install", "is_loopback", "new_token", "Refused", "TOKEN_ENV"]
