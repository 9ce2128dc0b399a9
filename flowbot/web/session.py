"""The web page's login: a session cookie for a user's password, and who is logged in.

``POST /api/login`` with ``{"user", "password"}`` sets a signed, HTTP-only, same-site cookie and
answers the session's anti-forgery token, which the page sends back in the ``X-Flowbot-CSRF``
header of every state-changing request (a single sign-on ends with the same cookie: see
:mod:`.oidc`). ``GET /api/whoami`` tells the page who it is and what the master requires, and
where single sign-on starts; ``POST /api/logout`` forgets the cookie.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import tornado.web

from ..defaults import SESSION_HOURS
from ..errors import InvalidRequest, NotFound
from .access import SESSION_COOKIE, check_password, check_same_origin, identify, session_cookie
from .api import ApiHandler

if TYPE_CHECKING:
    from ..auth import Auth

log = logging.getLogger(__name__)

#: Where single sign-on starts (and, under it, where the issuer sends people back).
OIDC_LOGIN = "/auth/oidc/login"


def start_session(
    handler: tornado.web.RequestHandler, auth: Auth, user: str, *, groups: Iterable[str] = (), via: str = "password"
) -> str:
    """Set the login cookie of ``user`` (in ``groups``, logged in ``via`` a password or oidc);
    returns the session's anti-forgery token."""
    csrf = secrets.token_urlsafe(24)
    session = {
        "user": user,
        "csrf": csrf,
        "groups": list(groups),
        "via": via,
        "expires": time.time() + SESSION_HOURS * 3600,
    }
    handler.set_cookie(
        SESSION_COOKIE,
        session_cookie(handler, auth, session),
        expires_days=SESSION_HOURS / 24,
        httponly=True,
        samesite="Strict",
        secure=handler.request.protocol == "https",
        path="/",
    )
    log.info("user %s logged in from %s (%s)", user, handler.request.remote_ip, via)
    return csrf


class SessionHandler(ApiHandler):
    """``/api/login``, ``/api/logout`` and ``/api/whoami``: the web page's login."""

    def prepare(self) -> None:
        pass  # logging in is how credentials are had: no check before it

    async def get(self, action: str) -> None:
        if action != "whoami":
            raise NotFound(f"no such endpoint: GET /api/{action}")
        auth = self.reads.pipeline().auth
        who = await identify(self, auth) if auth is not None else None
        self.reply(
            {
                "user": who,
                "csrf": self.session_csrf,
                "control": "open" if auth is None else "users",
                "read": "open" if auth is None or auth.reads_open else "users",
                "login": bool(auth and auth.users),
                "sso": {"name": auth.oidc.name, "url": OIDC_LOGIN} if auth is not None and auth.oidc else None,
            }
        )

    async def post(self, action: str) -> None:
        check_same_origin(self)
        if action == "logout":
            self.clear_cookie(SESSION_COOKIE, path="/")
            self.reply({"user": None})
            return
        if action != "login":
            raise NotFound(f"no such endpoint: POST /api/{action}")
        auth = self.reads.pipeline().auth
        if auth is None or not auth.users:
            raise InvalidRequest("this master has no users to log in as")
        body = self.body()
        user, password = body.get("user"), body.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            raise InvalidRequest('log in with a JSON body {"user": ..., "password": ...}')
        await check_password(self, auth, user, password)
        self.reply({"user": user, "csrf": start_session(self, auth, user)})
