"""Access control over HTTP: who a request comes from, and whether it may do what it asks.

Credentials come four ways: ``Authorization: Bearer TOKEN`` (API tokens: scripts, the CLI),
``Authorization: Basic`` (a user's password, for curl), a header naming the user that a trusted
reverse proxy set (``Auth(proxy=...)``, only from the proxy's addresses), or the web page's session
cookie, set by ``POST /api/login`` or a single sign-on (see :mod:`.oidc`). With no
:class:`~flowbot.auth.Auth` configured everything is open. With roles, each action is checked
against them too (:func:`require`).

Names: every request must name the master in its ``Host`` header: a loopback name, an IP address,
the name the master binds, the host of ``Pipeline(url=...)`` or one of ``Pipeline(allowed_hosts=...)``.
A page whose DNS name its owner points at the master's address (DNS rebinding) is same-origin with
itself, so nothing else tells its requests apart; they are refused (403) whatever they ask.

Cross-site requests: every state-changing request must come from the master's own pages or from a
non-browser client. Browsers say where a request comes from (``Origin``, ``Sec-Fetch-Site``), so a
request that another site's page makes is refused (403) whatever credentials it carries; requests
riding on the session cookie must also repeat the session's anti-forgery token in the
``X-Flowbot-CSRF`` header, which a foreign page can neither read nor send without the master's
consent (it never grants CORS).

Guessing is held off (429, with ``Retry-After``) per address and per account, for passwords and
API tokens alike (see :mod:`.throttle`); wrong passwords never hold off tokens, nor the reverse.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import tornado.web

from ..defaults import SESSION_HOURS
from ..errors import Forbidden, InvalidRequest, Unauthorized

if TYPE_CHECKING:
    from ..auth import Auth
    from ..pipeline import Pipeline
    from ..roles import Permission
    from .throttle import CredentialThrottle

log = logging.getLogger(__name__)

SESSION_COOKIE = "flowbot_session"
CSRF_HEADER = "X-Flowbot-CSRF"


def host_allowed(host_name: str, pipeline: Pipeline, bound: str) -> bool:
    """Whether ``host_name`` (a request's ``Host``, without its port) names this master.

    Args:
        bound: the host the master's HTTP server binds (a name or an address).
    """
    name = _host(host_name)
    if name == "localhost" or name.endswith(".localhost"):
        return True  # browsers resolve these to loopback themselves: no DNS answer rebinds them
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return True  # an address is no DNS name: a page under it is one the master itself served
    served = {_host(bound), *(_host(h) for h in pipeline.allowed_hosts)}
    if pipeline.url:
        served.add(_host(urlsplit(pipeline.url).hostname or ""))
    return name in served or "*" in served


def refuse_host(host_name: str) -> Forbidden:
    """The error for a request whose ``Host`` names another server."""
    return Forbidden(
        f"this master is not served under the name {_host(host_name)!r} (the request's Host header); "
        "if it is, add the name to Pipeline(allowed_hosts=[...])"
    )


def _host(name: str) -> str:
    return name.strip("[]").rstrip(".").lower()


async def identify(handler: tornado.web.RequestHandler, auth: Auth | None) -> str | None:
    """The user or token name a request carries, or None when it carries no credentials (``auth``:
    the pipeline's, read per request).

    Sets ``handler.session_csrf`` when the credentials are the session cookie or a proxy's header
    (a browser's, which must repeat it), and ``handler.groups`` to the groups single sign-on or the
    proxy gave.

    Raises:
        Forbidden: credentials that are wrong. TooManyAttempts: this client guessed too often.
    """
    handler.session_csrf = None
    handler.groups = ()
    header = handler.request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if auth is None:
            return None  # an open master ignores credentials it has no use for
        if scheme.lower() == "bearer":
            throttle: CredentialThrottle = handler.application.settings["token_throttle"]
            client = handler.request.remote_ip or ""
            began = throttle.begin(client)
            owner = auth.token_owner(value)
            if owner is None:
                throttle.failed(client)
                log.warning("wrong API token from %s", client)
                raise Forbidden("the API token is not valid")
            throttle.succeeded(client, "", began)
            return owner
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidRequest("malformed basic authorization header") from None
            await check_password(handler, auth, user, password)
            return user
        raise InvalidRequest(f"unsupported authorization scheme {scheme!r}; use Bearer or Basic")
    if auth is None:
        return None
    if auth.proxy is not None and auth.proxy.trusts(handler.request.remote_ip or ""):
        user = handler.request.headers.get(auth.proxy.user, "").strip()
        if user:
            listed = handler.request.headers.get(auth.proxy.groups, "") if auth.proxy.groups else ""
            handler.groups = tuple(g.strip() for g in listed.split(",") if g.strip())
            handler.session_csrf = proxy_csrf(handler, auth, user)
            return user
    session = _session(handler, auth)
    if session is not None and (auth.has_user(session["user"]) or (session["via"] == "oidc" and auth.oidc)):
        handler.session_csrf = session["csrf"]
        handler.groups = session["groups"]
        return session["user"]
    return None


def require(
    handler: tornado.web.RequestHandler, auth: Auth | None, who: str, permission: Permission, builder: str | None = None
) -> None:
    """Check that ``who`` (identified by :func:`authorize_control`) may do ``permission`` (to ``builder``).

    Raises:
        Forbidden: no role of the pipeline allows it.
    """
    if auth is None or auth.may(who, getattr(handler, "groups", ()), permission, builder):
        return
    what = f"{permission.value} builds of {builder!r}" if builder is not None else permission.value
    log.warning("refused %s %s to %s: no role allows it", handler.request.method, handler.request.path, who)
    raise Forbidden(f"{who} may not {what}: no role of this master's pipeline allows it")


def proxy_csrf(handler: tornado.web.RequestHandler, auth: Auth, user: str) -> str:
    """The anti-forgery token of someone a proxy names: the page reads it from whoami and repeats it."""
    key = _cookie_secret(handler, auth).encode()
    return hmac.new(key, f"proxy\0{user}".encode(), "sha256").hexdigest()


async def check_password(handler: tornado.web.RequestHandler, auth: Auth, user: str, password: str) -> None:
    """Check a user's password, unless the client sending it has been guessing.

    Raises:
        Forbidden: the password is wrong. TooManyAttempts: too many wrong ones lately.
    """
    throttle: CredentialThrottle = handler.application.settings["password_throttle"]
    client = handler.request.remote_ip or ""
    began = throttle.begin(client, user)
    if await auth.check_password(user, password):
        throttle.succeeded(client, user, began)
        return
    throttle.failed(client, user)
    log.warning("wrong password for user %r from %s", user, client)
    raise Forbidden("wrong user name or password")


async def authorize_read(handler: tornado.web.RequestHandler, auth: Auth | None) -> None:
    """Let a read through unless reads are closed and the request carries no valid credentials."""
    if auth is None or auth.reads_open:
        return
    if await identify(handler, auth) is None:
        raise Unauthorized("this master needs credentials to read: log in, or send an API token")


async def authorize_control(handler: tornado.web.RequestHandler, auth: Auth | None) -> str:
    """Check a state-changing request; returns who makes it ("" on an open master).

    Raises:
        Forbidden: a cross-site request, wrong credentials, or a session request without its token.
        Unauthorized: no credentials where they are needed.
    """
    check_same_origin(handler)
    if auth is None:
        return ""
    who = await identify(handler, auth)
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


def session_cookie(handler: tornado.web.RequestHandler, auth: Auth, session: dict[str, Any]) -> bytes:
    """The signed value of a login cookie holding ``session``."""
    return tornado.web.create_signed_value(_cookie_secret(handler, auth), SESSION_COOKIE, json.dumps(session))


def _cookie_secret(handler: tornado.web.RequestHandler, auth: Auth) -> str:
    # Read per request: a reconfigure may bring an Auth, or another one, at any time.
    return auth.session_secret or handler.application.settings["cookie_secret"]


def _session(handler: tornado.web.RequestHandler, auth: Auth) -> dict[str, Any] | None:
    raw = tornado.web.decode_signed_value(
        _cookie_secret(handler, auth),
        SESSION_COOKIE,
        handler.get_cookie(SESSION_COOKIE),
        max_age_days=SESSION_HOURS / 24 + 1,
    )
    if raw is None:
        return None
    try:
        session = json.loads(raw)
        if session["expires"] < time.time():
            return None
        return {
            "user": str(session["user"]),
            "csrf": str(session["csrf"]),
            "groups": tuple(str(g) for g in session.get("groups", ())),
            "via": str(session.get("via", "password")),
        }
    except (ValueError, KeyError, TypeError):
        return None
