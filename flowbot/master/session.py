"""The web page's login: a session cookie for a user's password, and who is logged in.

``POST /api/login`` with ``{"user", "password"}`` sets a signed, HTTP-only, same-site cookie and
answers the session's anti-forgery token, which the page sends back in the ``X-Flowbot-CSRF``
header of every state-changing request. ``GET /api/whoami`` tells the page who it is and what the
master requires; ``POST /api/logout`` forgets the cookie.
"""

from __future__ import annotations

import logging
import secrets
import time

from ..defaults import SESSION_HOURS
from ..errors import InvalidRequest, NotFound
from .access import SESSION_COOKIE, check_password, check_same_origin, identify, session_cookie
from .api import ApiHandler

log = logging.getLogger(__name__)


class SessionHandler(ApiHandler):
    """``/api/login``, ``/api/logout`` and ``/api/whoami``: the web page's login."""

    def prepare(self) -> None:
        pass  # logging in is how credentials are had: no check before it

    async def get(self, action: str) -> None:
        if action != "whoami":
            raise NotFound(f"no such endpoint: GET /api/{action}")
        auth = self.master.pipeline.auth
        who = await identify(self, self.master) if auth is not None else None
        self.reply(
            {
                "user": who,
                "csrf": self.session_csrf,
                "control": "open" if auth is None else "users",
                "read": "open" if auth is None or auth.reads_open else "users",
                "login": bool(auth and auth.users),
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
        auth = self.master.pipeline.auth
        if auth is None or not auth.users:
            raise InvalidRequest("this master has no users to log in as")
        body = self.body()
        user, password = body.get("user"), body.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            raise InvalidRequest('log in with a JSON body {"user": ..., "password": ...}')
        await check_password(self, auth, user, password)
        csrf = secrets.token_urlsafe(24)
        session = {"user": user, "csrf": csrf, "expires": time.time() + SESSION_HOURS * 3600}
        self.set_cookie(
            SESSION_COOKIE,
            session_cookie(self, auth, session),
            expires_days=SESSION_HOURS / 24,
            httponly=True,
            samesite="Strict",
            secure=self.request.protocol == "https",
            path="/",
        )
        log.info("user %s logged in from %s", user, self.request.remote_ip)
        self.reply({"user": user, "csrf": csrf})
