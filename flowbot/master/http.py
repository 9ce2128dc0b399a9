"""The master's HTTP server: the REST API, the event stream, the web page, badges and metrics."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import tornado.httpserver
import tornado.netutil
import tornado.web

from ..defaults import EVENT_JOURNAL_SIZE, MAX_BODY_BYTES, WEBSOCKET_PING
from ..errors import ConfigError
from .access import PasswordThrottle
from .api import routes
from .events import EventJournal
from .hooks import hook_routes
from .metrics import Metrics, MetricsHandler
from .session import SessionHandler
from .stream import EventStreamHandler
from .web import WWW, BadgeHandler, PageHandler

if TYPE_CHECKING:
    from .master import Master

log = logging.getLogger(__name__)


def make_app(master: Master) -> tornado.web.Application:
    journal = EventJournal(master.events, EVENT_JOURNAL_SIZE)
    metrics = Metrics(master)
    args = {"master": master}
    return tornado.web.Application(
        [
            (r"/", PageHandler, args),
            (r"/api/events", EventStreamHandler, {**args, "journal": journal}),
            (r"/api/(login|logout|whoami)", SessionHandler, args),
            (r"/badges/([^/]+)\.svg", BadgeHandler, args),
            (r"/metrics", MetricsHandler, {**args, "metrics": metrics}),
            *hook_routes(master),
            *routes(master),
        ],
        template_path=str(WWW),
        static_path=str(WWW),
        # Signs login cookies when the pipeline's Auth names no secret of its own; the Auth is
        # read per request, so one that a reconfigure brings works at once.
        cookie_secret=secrets.token_hex(32),
        password_throttle=PasswordThrottle(),
        websocket_ping_interval=WEBSOCKET_PING,
    )


def parse_address(address: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (or ``":PORT"``, or ``"PORT"``) -> ``(host, port)``; host defaults to loopback."""
    host, _, port = address.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"HTTP address {address!r} is not HOST:PORT") from None
    return (host.strip("[]") or "127.0.0.1"), number


def serve(master: Master, address: str) -> tuple[tornado.httpserver.HTTPServer, str]:
    """Start serving the API on ``address``; returns the server and its base URL."""
    host, port = parse_address(address)
    sockets = tornado.netutil.bind_sockets(port, host)
    server = tornado.httpserver.HTTPServer(make_app(master), max_body_size=MAX_BODY_BYTES, xheaders=False)
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return server, f"http://{shown}:{bound[1]}"
