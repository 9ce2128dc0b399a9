"""The master's HTTP server: the REST API and a WebSocket stream of events."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

from ..defaults import MAX_BODY_BYTES
from ..errors import ConfigError
from .api import routes
from .hooks import hook_routes

if TYPE_CHECKING:
    from .master import Master

log = logging.getLogger(__name__)


class EventStreamHandler(tornado.websocket.WebSocketHandler):
    """``/api/events``: every master event as one JSON text message.

    ``?types=build.finished,worker.lost`` keeps only those kinds of events; ``?builder=NAME`` keeps
    only events about that builder's builds (and worker events).
    """

    def initialize(self, master: Master) -> None:
        self.master = master
        self._unsubscribe = None

    def open(self) -> None:
        builder = self.get_query_argument("builder", None)
        types = self.get_query_argument("types", None)
        builds: set[int] = set()  # ids of that builder's builds, learnt from build events

        def send(event: dict[str, Any]) -> None:
            if builder is not None and not _about(event, builder, builds):
                return
            try:
                self.write_message(json.dumps(event, separators=(",", ":")))
            except tornado.websocket.WebSocketClosedError:
                self.on_close()

        self._unsubscribe = self.master.events.subscribe(send, types.split(",") if types else None)

    def on_close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


def _about(event: dict[str, Any], builder: str, builds: set[int]) -> bool:
    """Whether ``event`` concerns ``builder`` (worker events concern every builder)."""
    build = event.get("build")
    if build is not None:
        if build["builder"] == builder:
            builds.add(build["id"])
            return True
        return False
    if "build_id" in event:
        return event["build_id"] in builds
    if event["type"] == "change.new":
        return False
    return event.get("builder", builder) == builder


def make_app(master: Master) -> tornado.web.Application:
    return tornado.web.Application(
        [(r"/api/events", EventStreamHandler, {"master": master}), *hook_routes(master), *routes(master)]
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
