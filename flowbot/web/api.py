"""The JSON REST API: builders, builds, steps, logs, changes, requests and workers.

Lists are wrapped as Buildbot's data API does (``{"builds": [...]}``); results are names
(``"SUCCESS"``), times are epoch seconds. Unknown names give 404, malformed bodies 400 with a
message; a client never sees a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any

import tornado.iostream
import tornado.web

from ..defaults import BUILDER_PENDING_SHOWN, LOG_PAGE_CHUNKS, LOG_TAIL_LINES, MAX_LIST
from ..errors import (
    BodyTooLarge,
    ConfigError,
    FlowbotError,
    Forbidden,
    Gone,
    InvalidRequest,
    NotFound,
    StoreError,
    TooManyAttempts,
    Unauthorized,
)
from ..matrix import Matrix
from ..record_json import (
    build_detail_json,
    build_json,
    build_link_json,
    change_brief_json,
    change_json,
    pull_request_json,
    request_json,
    worker_json,
)
from ..records import BuildRequest
from ..results import Result
from ..roles import Permission
from ..sources.payload import read_json
from ..sources.webhooks import JsonHook
from .access import authorize_control, authorize_read, require

if TYPE_CHECKING:
    from ..master.status import BuilderStatus
    from .services import StatusReads, WebServices

log = logging.getLogger(__name__)

_STATUS = {
    NotFound: 404,
    Gone: 410,
    InvalidRequest: 400,
    ConfigError: 400,
    Unauthorized: 401,
    Forbidden: 403,
    TooManyAttempts: 429,
    BodyTooLarge: 413,
    StoreError: 503,
}
_dumps = json.JSONEncoder(separators=(",", ":")).encode

#: The largest id the store's integer columns hold (PostgreSQL's INTEGER); larger ones name nothing.
MAX_ID = 2**31 - 1


def error_status(exc: BaseException | None) -> int | None:
    """The HTTP status of a flowbot error, or None for anything else (a bug: 500)."""
    for cls, status in _STATUS.items():
        if isinstance(exc, cls):
            return status
    return None


def json_error(exc: BaseException) -> str:
    """The body of an error answer: ``{"error": "what went wrong"}``."""
    return _dumps({"error": str(exc)})


class ApiHandler(tornado.web.RequestHandler):
    """Base handler: JSON in, JSON out, flowbot errors mapped to HTTP statuses.

    Reads are checked against the read policy, and every request of a method in
    :attr:`control_methods` is a control action: it needs credentials when the master has an
    :class:`~flowbot.auth.Auth`, and must not come from another site. A handler that checks its
    callers its own way (a webhook with a signature) overrides :meth:`prepare`.
    """

    control_methods = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def initialize(self, services: WebServices) -> None:
        self.services = services
        self.reads = services.reads
        self.control = services.control
        #: Who makes a control request: a user or token name ("" on an open master).
        self.who = ""
        #: The anti-forgery token of the login session the request carries, if it carries one.
        self.session_csrf: str | None = None
        #: The groups of whoever makes the request (from single sign-on or a proxy), for roles.
        self.groups: tuple[str, ...] = ()

    async def prepare(self) -> None:
        if self.request.method in self.control_methods:
            self.who = await authorize_control(self, self.reads.pipeline().auth)
            if self.who:
                log.info("%s %s by %s", self.request.method, self.request.path, self.who)
        else:
            await authorize_read(self, self.reads.pipeline().auth)

    def allow(self, permission: Permission, builder: str | None = None) -> None:
        """Refuse (403) a control request whose maker no role allows ``permission`` (to ``builder``)."""
        require(self, self.reads.pipeline().auth, self.who, permission, builder)

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def reply(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(_dumps(payload))

    def body(self) -> dict[str, Any]:
        """The request body as a JSON object (an empty body is an empty object)."""
        if not self.request.body:
            return {}
        payload = read_json(self.request.body)
        if not isinstance(payload, dict):
            raise InvalidRequest("the body must be a JSON object")
        return payload

    def int_argument(self, name: str, default: int, maximum: int = MAX_LIST, minimum: int = 1) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidRequest(f"{name} must be an integer, not {raw!r}") from None
        if not minimum <= value <= maximum:
            raise InvalidRequest(f"{name} must be between {minimum} and {maximum}")
        return value

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        status = error_status(kwargs.get("exc_info", (None, None))[1])
        super().send_error(status or status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="flowbot"')
        if isinstance(exc, TooManyAttempts):
            self.set_header("Retry-After", str(exc.retry_after))
        if isinstance(exc, FlowbotError):
            message = str(exc)
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason
        self.finish(_dumps({"error": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, FlowbotError):
            log.info("%s %s: %s", self.request.method, self.request.uri, value)
        else:
            super().log_exception(typ, value, tb)


class IndexHandler(ApiHandler):
    def get(self) -> None:
        self.reply(
            {
                "endpoints": [
                    "GET /api/builders?builds=",
                    "GET /api/builders/{name}",
                    "POST /api/builders/{name}/force",
                    "GET /api/builders/{name}/builds/{number}",
                    "GET /api/builds?builder=&result=&limit=",
                    "GET /api/builds/{id}",
                    "GET /api/builds/{id}/steps/{number}/log?tail=&name=",
                    "GET /api/builds/{id}/steps/{number}/lines?first=&count=&tail=&find=error&log=",
                    "GET /api/builds/{id}/tests?outcome=&limit=",
                    "GET /api/builds/{id}/artifacts",
                    "GET /api/builds/{id}/artifacts/{path}?download=1",
                    "POST /api/builds/{id}/stop",
                    "POST /api/builds/{id}/rebuild",
                    "GET /api/matrices?builder=&limit=",
                    "GET /api/matrices/{id}",
                    "POST /api/builds/{id}/approve",
                    "POST /api/builds/{id}/reject",
                    "GET /api/approvals",
                    "GET /api/buildrequests?pending=true",
                    "GET /api/buildrequests/{id}",
                    "POST /api/buildrequests/{id}/cancel",
                    "GET /api/pullrequests?state=open|closed|all&limit=",
                    "GET /api/pullrequests/{id}",
                    "GET /api/changes?limit=",
                    "GET /api/changes/{id}",
                    "GET /api/search?q=&builder=&limit=",
                    "GET /api/grid?revisions=",
                    "POST /api/changes",
                    "GET /api/workers",
                    "POST /api/workers/{name}/pause",
                    "POST /api/workers/{name}/unpause",
                    "POST /api/workers/{name}/shutdown",
                    "GET /api/instances",
                    "GET /api/events?types=&builder=&build=&since= (WebSocket)",
                    "GET /api/whoami",
                    "POST /api/login",
                    "POST /api/logout",
                ]
            }
        )


class BuildersHandler(ApiHandler):
    async def get(self, name: str | None = None) -> None:
        per_builder = self.int_argument("builds", 0, maximum=MAX_LIST)
        # What is in memory is read before the store is: a client that follows up with
        # /api/events?since=event_id misses nothing and sees no pending request twice.
        event_id = self.services.events.last_id
        states = await self.reads.status.builders(
            None if name is None else [name], shown=BUILDER_PENDING_SHOWN, recent=per_builder
        )
        if name is not None and not states:
            raise NotFound(f"no builder named {name!r}")
        builders = [self.builder_json(state, per_builder) for state in states]
        if name is None:
            self.reply({"builders": builders, "event_id": event_id})
        else:
            self.reply({**builders[0], "event_id": event_id})

    def builder_json(self, state: BuilderStatus, per_builder: int) -> dict[str, Any]:
        """A builder as the API shows it: its configuration, how it stands, its newest builds."""
        builder = state.builder
        scheduler = self.reads.pipeline().force_scheduler_for(builder.name)
        shown = {
            "name": builder.name,
            "description": builder.description,
            "workers": builder.workers,
            "tags": builder.tags,
            "steps": builder.step_names,
            "pending": state.pending,
            "pending_requests": [r.id for r in state.first_pending],
            "running": state.running,
            "held": state.held,
            "force": force_form(scheduler) if scheduler is not None else None,
            "matrix": matrix_form(builder.matrix) if builder.matrix is not None else None,
            "last_build": build_json(state.last_build) if state.last_build is not None else None,
        }
        if per_builder:
            shown["builds"] = [build_json(b) for b in state.recent]
        return shown


class ForceHandler(ApiHandler):
    async def post(self, name: str) -> None:
        self.allow(Permission.FORCE, name)
        body = self.body()
        unknown = set(body) - {"reason", "branch", "revision", "owner", "properties"}
        if unknown:
            raise InvalidRequest(f"unknown field(s) {sorted(unknown)}")
        for key in ("reason", "branch", "revision", "owner"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise InvalidRequest(f"{key} must be a string")
        if body.get("properties") is not None and not isinstance(body["properties"], dict):
            raise InvalidRequest("properties must be an object")
        ids = await self.control.builds.force(
            name,
            reason=body.get("reason") or "",
            branch=body.get("branch") or None,
            revision=body.get("revision") or None,
            owner=self.who or body.get("owner") or "",  # an authenticated caller cannot pose as another
            properties=body.get("properties"),
        )
        self.reply({"buildrequest_ids": ids}, 201)


class ChangesHandler(ApiHandler):
    async def get(self) -> None:
        changes = await self.reads.store.changes.recent(limit=self.int_argument("limit", 50))
        builds = await self.reads.store.changes.builds_of([c.id for c in changes])
        shown = [{**change_json(c), "builds": [build_link_json(b) for b in builds.get(c.id, ())]} for c in changes]
        self.reply({"changes": shown})

    async def post(self) -> None:
        self.allow(Permission.SENDCHANGE)
        # The generic JSON webhook reads a change exactly as this endpoint does.
        change = JsonHook.change(self.body())
        change_id, request_ids = await self.control.builds.add_change(change)
        self.reply({"id": change_id, "buildrequest_ids": request_ids}, 201)


class BuildsHandler(ApiHandler):
    async def get(self) -> None:
        builder = self.get_query_argument("builder", None)
        unknown = builder is not None and self.reads.pipeline().builder(builder) is None
        if unknown and not await self.reads.store.builds.query(builder=builder, limit=1):
            raise NotFound(f"no builder named {builder!r}")
        result = self.get_query_argument("result", None)
        builds = await self.reads.store.builds.query(
            builder=builder,
            result=_parse_result(result) if result else None,
            limit=self.int_argument("limit", 50),
        )
        self.reply({"builds": [build_json(b) for b in builds]})


class BuildHandler(ApiHandler):
    async def get(self, build_id: str) -> None:
        stored = await self.reads.store.builds.get(path_id(build_id, "build"))
        _, spec = await self.reads.store.builds.buildset_of(stored.id)
        build = build_detail_json(stored)
        build["reason"] = spec.reason
        build["sourcestamps"] = [dataclasses.asdict(stamp) for stamp in spec.sourcestamps]
        live = self.reads.status.running_build(stored.id)
        if live is not None:  # stored when the build ends; until then, as they are now
            build["properties"] = live.properties.with_sources()
        elif not stored.properties:  # a build from before properties were stored: its request's
            build["properties"] = {name: list(pair) for name, pair in spec.properties.items()}
        build["current_step"] = live.current_step if live is not None else None
        build["approval"] = self.control.approvals.waiting(stored.id)
        build["tests"] = await self.reads.store.steps.test_counts(stored.id)
        build["changes"] = [change_brief_json(c) for c in await self.reads.store.changes.of_build(stored.id)]
        pull_request = await self.reads.store.pull_requests.of_build(stored.id)
        build["pull_request"] = pull_request_json(pull_request) if pull_request is not None else None
        build["matrix_id"] = await self.reads.store.matrices.of_build(stored.id)
        self.reply(build)


class BuilderBuildHandler(BuildHandler):
    """``/api/builders/{name}/builds/{number}``: a build as people name it (``unit/7``)."""

    async def get(self, name: str, number: str) -> None:  # type: ignore[override]
        build_id = await self.reads.store.builds.id_of(name, path_id(number, "build number"))
        await super().get(str(build_id))


class StopBuildHandler(ApiHandler):
    async def post(self, build_id: str) -> None:
        body = self.body()
        reason = body.get("reason") or "stopped through the API"
        if not isinstance(reason, str):
            raise InvalidRequest("reason must be a string")
        if self.who:
            reason = f"{reason} (by {self.who})"
        build = path_id(build_id, "build")
        self.allow(Permission.STOP, (await self.reads.store.builds.get(build)).builder)
        await self.control.builds.stop_build(build, reason)
        self.reply({"stopping": build})


class RebuildHandler(ApiHandler):
    async def post(self, build_id: str) -> None:
        body = self.body()
        if set(body) - {"reason"} or not isinstance(body.get("reason", ""), str):
            raise InvalidRequest('a rebuild takes at most {"reason": "..."}')
        build = path_id(build_id, "build")
        self.allow(Permission.FORCE, (await self.reads.store.builds.get(build)).builder)
        ids = await self.control.builds.rebuild(build, reason=body.get("reason", ""), owner=self.who)
        self.reply({"buildrequest_ids": ids}, 201)


class DecideHandler(ApiHandler):
    """``POST /api/builds/{id}/approve`` or ``/reject``: decide about a build that waits for approval,
    with ``{"comment": "...", "properties": {...}}`` (the approval form's values)."""

    async def post(self, build_id: str, verdict: str) -> None:
        body = self.body()
        unknown = set(body) - {"comment", "properties"}
        if unknown:
            raise InvalidRequest(f"unknown field(s) {sorted(unknown)}; a decision takes comment and properties")
        comment = body.get("comment") or ""
        if not isinstance(comment, str):
            raise InvalidRequest("comment must be a string")
        if body.get("properties") is not None and not isinstance(body["properties"], dict):
            raise InvalidRequest("properties must be an object")
        build = path_id(build_id, "build")
        self.allow(Permission.APPROVE, (await self.reads.store.builds.get(build)).builder)
        decision = self.control.approvals.decide(
            build, verdict == "approve", by=self.who, comment=comment, values=body.get("properties")
        )
        properties = {name: value for name, (value, _) in decision.properties.items()}
        self.reply({"build": build, "approved": decision.approved, "by": decision.by, "properties": properties})


class ApprovalsHandler(ApiHandler):
    """``GET /api/approvals``: the builds that wait for a person's decision, oldest first."""

    def get(self) -> None:
        self.reply({"approvals": self.control.approvals.all()})


class LogHandler(ApiHandler):
    """A step's log as text: with ``tail=N`` its last N lines, else all of it, a page at a time
    (however long the log, the master holds one page of it)."""

    async def get(self, build_id: str, step: str) -> None:
        build, number = path_id(build_id, "build"), path_id(step, "step")
        name = self.get_query_argument("name", "stdio")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if self.get_query_argument("tail", None) is not None:
            tail = self.int_argument("tail", LOG_TAIL_LINES, maximum=100_000)
            await flush_live(self.reads.status, build, number, name)
            lines, first = await self.reads.store.logs.tail(build, number, name, tail)
            self.set_header("X-First-Line", str(first))  # live log events number their lines alike
            self.finish(_text(lines))
            return
        start = 0
        try:
            while lines := await self.reads.store.logs.lines(build, number, name, start=start, chunks=LOG_PAGE_CHUNKS):
                self.write(_text(lines))
                await self.flush()  # the client takes this page before the next is read
                start += len(lines)
        except tornado.iostream.StreamClosedError:
            return  # the client left before the end
        self.finish()


class BuildRequestsHandler(ApiHandler):
    async def get(self) -> None:
        raw = self.get_query_argument("pending", None)
        pending = None if raw is None else _BOOLEANS.get(raw.lower())
        if raw is not None and pending is None:
            raise InvalidRequest(f"pending must be true or false, not {raw!r}")
        requests = await self.reads.store.requests.query(
            pending=pending,
            limit=self.int_argument("limit", 200),
            offset=self.int_argument("offset", 0, maximum=2**31, minimum=0),
            builder=self.get_query_argument("builder", None),
        )
        self.reply({"buildrequests": [waiting(self.reads.status, r) for r in requests]})


class BuildRequestHandler(ApiHandler):
    """One request: whether it is done (``complete_at``, ``result``) and its builds, oldest first."""

    async def get(self, request_id: str) -> None:
        request = path_id(request_id, "build request")
        found = await self.reads.store.requests.query(request_id=request, limit=1)
        if not found:
            raise NotFound(f"no build request {request}")
        builds = await self.reads.store.builds.query(request_id=request, limit=MAX_LIST)
        self.reply({**waiting(self.reads.status, found[0]), "builds": [build_json(b) for b in builds[::-1]]})


class CancelRequestHandler(ApiHandler):
    async def post(self, request_id: str) -> None:
        request = path_id(request_id, "build request")
        found = await self.reads.store.requests.query(request_id=request, limit=1)
        self.allow(Permission.STOP, found[0].builder if found else None)
        await self.control.builds.cancel_request(request)
        self.reply({"cancelled": request})


class WorkersHandler(ApiHandler):
    async def get(self) -> None:
        self.reply({"workers": [worker_json(worker) for worker in await self.reads.status.workers()]})


class InstancesHandler(ApiHandler):
    """The instances of workers started on demand, and the id that labels them as this master's."""

    def get(self) -> None:
        instances = [dataclasses.asdict(view) for view in self.reads.instances.views()]
        self.reply({"master": self.reads.instance_id, "instances": instances})


class WorkerControlHandler(ApiHandler):
    """Pause, unpause or shut down a worker: ``{"reason": ...}``, nothing, ``{"graceful": bool}``."""

    async def post(self, name: str, action: str) -> None:
        self.allow(Permission.PAUSE)
        body = self.body()
        allowed = {"pause": {"reason"}, "unpause": set(), "shutdown": {"graceful"}}[action]
        unknown = set(body) - allowed
        if unknown:
            raise InvalidRequest(f"unknown field(s) {sorted(unknown)}; {action} takes {sorted(allowed) or 'none'}")
        if action == "pause":
            reason = body.get("reason") or ""
            if not isinstance(reason, str):
                raise InvalidRequest("reason must be a string")
            if self.who:
                reason = f"{reason} (by {self.who})" if reason else f"by {self.who}"
            await self.control.workers.pause(name, reason)
        elif action == "unpause":
            await self.control.workers.unpause(name)
        else:
            graceful = body.get("graceful", True)
            if not isinstance(graceful, bool):
                raise InvalidRequest("graceful must be true or false")
            self.control.workers.shutdown(name, graceful)
        self.reply({"worker": name, **self.control.workers.state(name)})


class ReconfigHandler(ApiHandler):
    async def post(self) -> None:
        self.allow(Permission.RECONFIGURE)
        await self.control.builds.reload()
        pipeline = self.reads.pipeline()
        self.reply(
            {"builders": [b.name for b in pipeline.builders], "schedulers": [s.name for s in pipeline.schedulers]}
        )


class NotFoundHandler(ApiHandler):
    def prepare(self) -> None:
        raise NotFound(f"no such endpoint: {self.request.method} {self.request.path}")


def force_form(scheduler: Any) -> dict[str, Any]:
    """What the web page's force form asks for: the scheduler's name and its fields, in order.

    Each field is ``{"name", "label", "type", "default"}`` (``type``: text, int, bool or choice,
    with ``choices``). ``reason``, ``branch`` and ``revision`` go into the request as they are;
    any other field is one of the scheduler's typed parameters, which become build properties.
    """
    fields = [
        {"name": "reason", "label": "Reason", "type": "text", "default": ""},
        {"name": "branch", "label": "Branch", "type": "text", "default": ""},
        {"name": "revision", "label": "Revision", "type": "text", "default": ""},
    ]
    fields += scheduler.describe_params()
    return {"scheduler": scheduler.name, "fields": fields}


def matrix_form(matrix: Matrix) -> dict[str, Any]:
    """A builder's matrix as the API shows it: its axes' values (includes' too), its size and fail_fast."""
    return {"axes": matrix.values, "size": len(matrix), "fail_fast": matrix.fail_fast}


async def flush_live(status: StatusReads, build_id: int, step: int, name: str) -> None:
    """Store what a running step has printed so far, so a read joins the live lines without a gap."""
    build = status.running_build(build_id)
    if build is None or build.current_step != step:
        return
    step_log = build.open_log(name)  # a reader never creates a log
    write = step_log.flush() if step_log is not None else None
    if write is not None:
        await write


def waiting(status: StatusReads, request: BuildRequest) -> dict[str, Any]:
    """A request as the API shows it: one not started yet says why it waits (``waiting``)."""
    return {**request_json(request), "waiting": status.why_waiting(request)}


def path_id(raw: str, what: str) -> int:
    """An id from the URL; one too large for any row is not found (not a database overflow)."""
    value = int(raw)
    if value > MAX_ID:
        raise NotFound(f"no {what} {raw}")
    return value


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _text(lines: list[tuple[str, str]]) -> str:
    return "".join(line + "\n" for _, line in lines)


def _parse_result(raw: str) -> Result:
    try:
        return Result(int(raw)) if raw.isdigit() else Result[raw.upper()]
    except (KeyError, ValueError):
        raise InvalidRequest(f"unknown result {raw!r}; use one of {[r.name for r in Result]}") from None


def routes(services: WebServices) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"services": services}
    return [
        (r"/api/?", IndexHandler, args),
        (r"/api/builders", BuildersHandler, args),
        (r"/api/builders/([^/]+)", BuildersHandler, args),
        (r"/api/builders/([^/]+)/force", ForceHandler, args),
        (r"/api/builders/([^/]+)/builds/(\d+)", BuilderBuildHandler, args),
        (r"/api/builds", BuildsHandler, args),
        (r"/api/builds/(\d+)", BuildHandler, args),
        (r"/api/builds/(\d+)/stop", StopBuildHandler, args),
        (r"/api/builds/(\d+)/rebuild", RebuildHandler, args),
        (r"/api/builds/(\d+)/(approve|reject)", DecideHandler, args),
        (r"/api/approvals", ApprovalsHandler, args),
        (r"/api/builds/(\d+)/steps/(\d+)/log", LogHandler, args),
        (r"/api/buildrequests", BuildRequestsHandler, args),
        (r"/api/buildrequests/(\d+)", BuildRequestHandler, args),
        (r"/api/buildrequests/(\d+)/cancel", CancelRequestHandler, args),
        (r"/api/changes", ChangesHandler, args),
        (r"/api/workers", WorkersHandler, args),
        (r"/api/workers/([^/]+)/(pause|unpause|shutdown)", WorkerControlHandler, args),
        (r"/api/instances", InstancesHandler, args),
        (r"/api/reconfig", ReconfigHandler, args),
        (r"/api/.*", NotFoundHandler, args),
    ]
