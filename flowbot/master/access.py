"""Access control over HTTP: who a request comes from, and whether it may do what it asks.

Credentials come three ways: ``Authorization: Bearer TOKEN`` (API tokens: scripts, the CLI),
``Authorization: Basic`` (a user's password, for curl), or the web page's session cookie, set by
``POST /api/login``. With no :class:`~flowbot.auth.Auth` configured everything is open.

Cross-site requests: every state-changing request must come from the master's own pages or from a
non-browser client. Browsers say where a request comes from (``Origin``, ``Sec-Fetch-Site``), so a
request that another site's page makes is refused (403) whatever credentials it carries; requests
riding on the session cookie must also repeat the session's anti-forgery token in the
``X-Flowbot-CSRF`` header, which a foreign page can neither read nor send without the master's
consent (it never grants CORS).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import tornado.web

from ..defaults import SESSION_HOURS
from ..errors import Forbidden, InvalidRequest, Unauthorized

if TYPE_CHECKING:
    from .master import Master

log = logging.getLogger(__name__)

SESSION_COOKIE = "flowbot_session"
CSRF_HEADER = "X-Flowbot-CSRF"


def identify(handler: tornado.web.RequestHandler, master: Master) -> str | None:
    """The user or token name a request carries, or None when it carries no credentials.

    Sets ``handler.session_csrf`` when the credentials are the session cookie.

    Raises:
        Forbidden: credentials that are wrong.
    """
    auth = master.pipeline.auth
    handler.session_csrf = None
    header = handler.request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if auth is None:
            return None  # an open master ignores credentials it has no use for
        if scheme.lower() == "bearer":
            owner = auth.token_owner(value)
            if owner is None:
                raise Forbidden("the API token is not valid")
            return owner
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidRequest("malformed basic authorization header") from None
            if not auth.check_password(user, password):
                raise Forbidden("wrong user name or password")
            return user
        raise InvalidRequest(f"unsupported authorization scheme {scheme!r}; use Bearer or Basic")
    if auth is None:
        return None
    session = _session(handler)
    if session is not None and auth.has_user(session["user"]):
        handler.session_csrf = session["csrf"]
        return session["user"]
    return None


def authorize_read(handler: tornado.web.RequestHandler, master: Master) -> None:
    """Let a read through unless reads are closed and the request carries no valid credentials."""
    auth = master.pipeline.auth
    if auth is None or auth.reads_open:
        return
    if identify(handler, master) is None:
        raise Unauthorized("this master needs credentials to read: log in, or send an API token")


def authorize_control(handler: tornado.web.RequestHandler, master: Master) -> str:
    """Check a state-changing request; returns who makes it ("" on an open master).

    Raises:
        Forbidden: a cross-site request, wrong credentials, or a session request without its token.
        Unauthorized: no credentials where they are needed.
    """
    check_same_origin(handler)
    if master.pipeline.auth is None:
        return ""
    who = identify(handler, master)
    if who is None:
        raise Unauthorized("this action needs credentials: log in, or send an API token (Authorization: Bearer ...)")
    if handler.session_csrf is not None:
        sent = handler.request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), handler.session_csrf.encode()):
            raise Forbidden(f"a request made with the login cookie must carry the {CSRF_HEADER} header")
    return who


def check_same_origin(handler: tornado.web.RequestHandler) -> None:
    """Refuse a request that a browser says comes from another site.

    Raises:
        Forbidden: ``Sec-Fetch-Site`` is not same-origin, or ``Origin`` names another host.
    """
    headers = handler.request.headers
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("cross-site request refused")
    origin = headers.get("Origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != handler.request.host.lower()):
        raise Forbidden(f"cross-site request from {origin} refused")


def _session(handler: tornado.web.RequestHandler) -> dict[str, Any] | None:
    raw = handler.get_signed_cookie(SESSION_COOKIE, max_age_days=SESSION_HOURS / 24 + 1)
    if raw is None:
        return None
    try:
        session = json.loads(raw)
        if session["expires"] < time.time():
            return None
        return {"user": str(session["user"]), "csrf": str(session["csrf"])}
    except (ValueError, KeyError, TypeError):
        return None
