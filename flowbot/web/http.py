"""The master's HTTP server: the REST API, the event stream, the web page, badges and metrics.

:class:`HttpFace` serves it from the master's start to its stop; everything it serves uses the
master through the :class:`~.services.WebServices` it is handed.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.netutil
import tornado.routing
import tornado.web

from ..defaults import (
    EVENT_JOURNAL_SIZE,
    MAX_BODY_BYTES,
    MAX_DISCARDED_BODY_BYTES,
    MAX_HOOK_BODY_BYTES,
    WEBSOCKET_PING,
)
from ..errors import BodyTooLarge, ConfigError
from ..master.events import EventJournal
from .access import host_allowed, refuse_host
from .api import ApiHandler, routes
from .api_artifacts import artifact_routes
from .api_history import history_routes
from .api_logs import log_routes
from .api_matrices import matrix_routes
from .api_pull_requests import pull_request_routes
from .api_tests import test_routes
from .hooks import hook_routes
from .metrics import Metrics, MetricsHandler
from .oidc import oidc_routes
from .page import WWW, BadgeHandler, PageHandler
from .services import WebServices
from .session import SessionHandler
from .stream import EventStreamHandler
from .throttle import CredentialThrottle

log = logging.getLogger(__name__)


class MasterApplication(tornado.web.Application):
    """The routes, behind a check that each request's ``Host`` names the master (see
    :func:`~.access.host_allowed`): a request for another name reaches no route, static files
    included. The pipeline is read per request, so a reconfigure's names count at once."""

    #: See :meth:`_literal_route` (made at the first request, once every rule is in).
    _literal: dict[str, tuple[type, dict[str, Any]]] | None = None
    #: See :meth:`_host_allowed`: the pipeline the answers are for, and the answers by name.
    _hosts_of: Any = None
    _hosts: dict[str, bool] = {}  # each application has its own from its first request

    def __init__(self, services: WebServices, bound: str, handlers: list[Any], **settings: Any):
        super().__init__(handlers, **settings)
        self.services = services
        self.bound = bound
        self._told: set[str] = set()

    def find_handler(self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        # Called once the headers are in and before the body is read: the body's limit is set here.
        if self._host_allowed(request.host_name):
            limit = MAX_HOOK_BODY_BYTES if request.path.startswith("/hooks/") else MAX_BODY_BYTES
            length = request.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limit:
                args = {"services": self.services, "length": int(length), "limit": limit}
                return self.get_handler_delegate(request, TooLargeHandler, args)
            request.connection.set_max_body_size(limit)
            route = self._literal_route(request.path)
            if route is not None:  # the handler the rules would find, without trying each before it
                return self.get_handler_delegate(request, *route)
            return super().find_handler(request, **kwargs)
        if request.host_name not in self._told and len(self._told) < 100:  # once a name, never a flood
            self._told.add(request.host_name)
            log.warning(
                "refused a request for host %r from %s: it is not a name this master is served under "
                "(Pipeline(allowed_hosts=...) names more)",
                request.host_name,
                request.remote_ip,
            )
        return self.get_handler_delegate(request, OtherHostHandler, {"services": self.services})

    def _host_allowed(self, host_name: str) -> bool:
        """:func:`~.access.host_allowed` for the pipeline running now, remembered for the few
        names a master is asked for (an address is parsed otherwise, per request)."""
        pipeline = self.services.reads.pipeline()
        if self._hosts_of is not pipeline:  # a reconfigure may serve other names
            self._hosts_of, self._hosts = pipeline, {}
        allowed = self._hosts.get(host_name)
        if allowed is None:
            allowed = host_allowed(host_name, pipeline, self.bound)
            if len(self._hosts) < 100:
                self._hosts[host_name] = allowed
        return allowed

    def _literal_route(self, path: str) -> tuple[type, dict[str, Any]] | None:
        """The handler and its arguments for ``path`` when the first rule that matches it is a
        plain path (no groups to read from it), else None. Trying the rules in order costs a
        regular expression each, and the API's busiest paths come last."""
        if self._literal is None:
            self._literal = _literal_routes(self.wildcard_router.rules)
        return self._literal.get(path)


def _literal_routes(rules: list[tornado.routing.Rule]) -> dict[str, tuple[type, dict[str, Any]]]:
    """``{path: (handler, arguments)}`` for each rule whose pattern is a plain path, and which
    no rule before it matches (the first rule that matches a request is the one that serves it)."""
    routes: dict[str, tuple[type, dict[str, Any]]] = {}
    for index, rule in enumerate(rules):
        matcher = rule.matcher
        if not isinstance(matcher, tornado.routing.PathMatches) or matcher.regex.groups:
            continue
        path = matcher._path  # the pattern written back as a path; None if it is no plain path
        if path is None or matcher.regex.fullmatch(path) is None or path in routes:
            continue
        if not isinstance(rule.target, type) or any(_may_match(other, path) for other in rules[:index]):
            continue
        routes[path] = (rule.target, rule.target_kwargs or {})
    return routes


def _may_match(rule: tornado.routing.Rule, path: str) -> bool:
    matcher = rule.matcher
    if isinstance(matcher, tornado.routing.PathMatches):
        return matcher.regex.match(path) is not None
    return True  # a matcher of another kind may match anything


class OtherHostHandler(ApiHandler):
    """Every request for a ``Host`` that is not the master's: 403 with a JSON error."""

    def prepare(self) -> None:
        raise refuse_host(self.request.host_name)


@tornado.web.stream_request_body
class TooLargeHandler(ApiHandler):
    """A request whose body is over its endpoint's limit: 413 with a JSON error. The body is read
    and thrown away first (a client that sends it whole before reading would otherwise find the
    connection reset), unless the client waits to be told to go on, or the body is not worth it."""

    def initialize(self, services: WebServices, length: int, limit: int) -> None:  # type: ignore[override]
        super().initialize(services)
        self.length = length
        self.refusal = BodyTooLarge(f"the request body is {length} bytes; this endpoint takes at most {limit}")

    def prepare(self) -> None:
        # Tornado reads on to the end of the body it was told of, so it is told of this one.
        self.request.connection.set_max_body_size(self.length)
        expect = self.request.headers.get("Expect", "").lower()
        if expect == "100-continue" or self.length > MAX_DISCARDED_BODY_BYTES:
            raise self.refusal

    def data_received(self, chunk: bytes) -> None:
        """Thrown away."""

    def refuse(self, *args: Any) -> None:
        raise self.refusal

    get = head = post = put = patch = delete = options = refuse


def make_app(services: WebServices, bound: str = "127.0.0.1") -> tornado.web.Application:
    """The master's HTTP application; ``bound`` is the host its server binds."""
    journal = EventJournal(services.events, EVENT_JOURNAL_SIZE)
    metrics = Metrics(services)
    args = {"services": services}
    return MasterApplication(
        services,
        bound,
        [
            (r"/", PageHandler, args),
            (r"/api/events", EventStreamHandler, {**args, "journal": journal}),
            (r"/api/(login|logout|whoami)", SessionHandler, args),
            (r"/badges/([^/]+)\.svg", BadgeHandler, args),
            (r"/metrics", MetricsHandler, {**args, "metrics": metrics}),
            *hook_routes(services),
            *log_routes(services),
            *history_routes(services),
            *test_routes(services),
            *artifact_routes(services),
            *pull_request_routes(services),
            *matrix_routes(services),
            *oidc_routes(services),
            *routes(services),
        ],
        template_path=str(WWW),
        static_path=str(WWW),
        # Signs login cookies when the pipeline's Auth names no secret of its own; the Auth is
        # read per request, so one that a reconfigure brings works at once.
        cookie_secret=secrets.token_hex(32),
        password_throttle=CredentialThrottle("passwords"),
        token_throttle=CredentialThrottle("API tokens"),
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


class HttpFace:
    """The HTTP server as one of the master's faces: it serves from the master's start to its stop.

    Args:
        address: ``"HOST:PORT"`` to serve on (port 0: any free port).
        services: what it serves, made as it starts (once the master's store is open).
    """

    def __init__(self, address: str, services: Callable[[], WebServices]):
        self.address = address
        self._services = services
        #: Where it serves, once started (``http://HOST:PORT``).
        self.url: str | None = None
        self._server: tornado.httpserver.HTTPServer | None = None

    async def start(self) -> None:
        host, port = parse_address(self.address)
        sockets = tornado.netutil.bind_sockets(port, host)
        self._server = tornado.httpserver.HTTPServer(
            make_app(self._services(), host), max_body_size=MAX_BODY_BYTES, xheaders=False
        )
        self._server.add_sockets(sockets)
        bound = sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        log.info("HTTP API on %s", self.url)

    def stop(self) -> None:
        """Take no new connections; those open go on until :meth:`close`."""
        if self._server is not None:
            self._server.stop()

    async def close(self) -> None:
        """End the connections still open (event streams, say)."""
        if self._server is not None:
            await self._server.close_all_connections()
