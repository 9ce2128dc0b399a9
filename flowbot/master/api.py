"""The JSON REST API: builders, builds, steps, logs, changes, requests and workers.

Lists are wrapped as Buildbot's data API does (``{"builds": [...]}``); results are names
(``"SUCCESS"``), times are epoch seconds. Unknown names give 404, malformed bodies 400 with a
message; a client never sees a traceback.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import tornado.web

from ..defaults import MAX_LIST
from ..errors import ConfigError, FlowbotError, InvalidRequest, NotFound, StoreError
from ..records import Change
from ..results import Result

if TYPE_CHECKING:
    from .master import Master

log = logging.getLogger(__name__)

_STATUS = {NotFound: 404, InvalidRequest: 400, ConfigError: 400, StoreError: 503}
_dumps = json.JSONEncoder(separators=(",", ":")).encode


class ApiHandler(tornado.web.RequestHandler):
    """Base handler: JSON in, JSON out, flowbot errors mapped to HTTP statuses."""

    def initialize(self, master: Master) -> None:
        self.master = master

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
        try:
            payload = json.loads(self.request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise InvalidRequest("the body must be a JSON object")
        return payload

    def int_argument(self, name: str, default: int, maximum: int = MAX_LIST) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidRequest(f"{name} must be an integer, not {raw!r}") from None
        if not 1 <= value <= maximum:
            raise InvalidRequest(f"{name} must be between 1 and {maximum}")
        return value

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        for cls, status in _STATUS.items():
            if isinstance(exc, cls):
                status_code = status
                break
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
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
                    "GET /api/builders",
                    "GET /api/builders/{name}",
                    "POST /api/builders/{name}/force",
                    "GET /api/builds?builder=&result=&limit=",
                    "GET /api/builds/{id}",
                    "GET /api/builds/{id}/steps/{number}/log",
                    "POST /api/builds/{id}/stop",
                    "GET /api/buildrequests?pending=true",
                    "POST /api/buildrequests/{id}/cancel",
                    "POST /api/changes",
                    "GET /api/workers",
                    "GET /api/events (WebSocket)",
                ]
            }
        )


class BuildersHandler(ApiHandler):
    async def get(self, name: str | None = None) -> None:
        latest = await self.master.store.latest_builds()
        builders = []
        for builder in self.master.pipeline.builders:
            if name is not None and builder.name != name:
                continue
            force = self.master.pipeline.force_scheduler_for(builder.name)
            builders.append(
                {
                    "name": builder.name,
                    "description": builder.description,
                    "workers": builder.workers,
                    "tags": builder.tags,
                    "steps": builder.step_names,
                    "pending": self.master.queue.count(builder.name),
                    "running": sum(1 for b in self.master.running.values() if b.builder == builder.name),
                    "last_build": latest.get(builder.name),
                    "force": force and {"scheduler": force.name, "params": force.describe_params()},
                }
            )
        if name is None:
            self.reply({"builders": builders})
        elif builders:
            self.reply(builders[0])
        else:
            raise NotFound(f"no builder named {name!r}")


class ForceHandler(ApiHandler):
    async def post(self, name: str) -> None:
        body = self.body()
        unknown = set(body) - {"reason", "branch", "revision", "owner", "properties"}
        if unknown:
            raise InvalidRequest(f"unknown field(s) {sorted(unknown)}")
        for key in ("reason", "branch", "revision", "owner"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise InvalidRequest(f"{key} must be a string")
        if body.get("properties") is not None and not isinstance(body["properties"], dict):
            raise InvalidRequest("properties must be an object")
        ids = await self.master.force(
            name,
            reason=body.get("reason") or "",
            branch=body.get("branch"),
            revision=body.get("revision"),
            owner=body.get("owner") or "",
            properties=body.get("properties"),
        )
        self.reply({"buildrequest_ids": ids}, 201)


class ChangesHandler(ApiHandler):
    _TEXT = ("repository", "project", "codebase", "author", "committer", "comments", "revlink")
    _OPTIONAL_TEXT = ("branch", "revision", "category")

    async def post(self) -> None:
        body = self.body()
        unknown = set(body) - {*self._TEXT, *self._OPTIONAL_TEXT, "files", "properties", "when"}
        if unknown:
            raise InvalidRequest(f"unknown field(s) {sorted(unknown)}")
        fields: dict[str, Any] = {}
        for key in self._TEXT:
            if key in body:
                if not isinstance(body[key], str):
                    raise InvalidRequest(f"{key} must be a string")
                fields[key] = body[key]
        for key in self._OPTIONAL_TEXT:
            if body.get(key) is not None:
                if not isinstance(body[key], str):
                    raise InvalidRequest(f"{key} must be a string or null")
                fields[key] = body[key]
        files = body.get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise InvalidRequest("files must be a list of strings")
        properties = body.get("properties", {})
        if not isinstance(properties, dict):
            raise InvalidRequest("properties must be an object")
        if body.get("when") is not None:
            if not isinstance(body["when"], (int, float)) or isinstance(body["when"], bool):
                raise InvalidRequest("when must be a number (epoch seconds)")
            fields["when"] = float(body["when"])
        change = Change(files=tuple(files), properties=properties, **fields)
        change_id, request_ids = await self.master.add_change(change)
        self.reply({"id": change_id, "buildrequest_ids": request_ids}, 201)


class BuildsHandler(ApiHandler):
    async def get(self) -> None:
        builder = self.get_query_argument("builder", None)
        unknown = builder is not None and self.master.pipeline.builder(builder) is None
        if unknown and not await self.master.store.builds(builder=builder, limit=1):
            raise NotFound(f"no builder named {builder!r}")
        result = self.get_query_argument("result", None)
        builds = await self.master.store.builds(
            builder=builder,
            result=_parse_result(result) if result else None,
            limit=self.int_argument("limit", 50),
        )
        self.reply({"builds": builds})


class BuildHandler(ApiHandler):
    async def get(self, build_id: str) -> None:
        build = await self.master.store.build(int(build_id))
        live = next((b for b in self.master.running.values() if b.id == build["id"]), None)
        if live is not None:  # stored when the build ends; until then, as they are now
            build["properties"] = live.properties.with_sources()
        self.reply(build)


class StopBuildHandler(ApiHandler):
    async def post(self, build_id: str) -> None:
        body = self.body()
        reason = body.get("reason") or "stopped through the API"
        if not isinstance(reason, str):
            raise InvalidRequest("reason must be a string")
        await self.master.stop_build(int(build_id), reason)
        self.reply({"stopping": int(build_id)})


class LogHandler(ApiHandler):
    async def get(self, build_id: str, step: str) -> None:
        name = self.get_query_argument("name", "stdio")
        lines = await self.master.store.log_lines(int(build_id), int(step), name)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("".join(line + "\n" for _, line in lines))


class BuildRequestsHandler(ApiHandler):
    async def get(self) -> None:
        raw = self.get_query_argument("pending", None)
        pending = None if raw is None else raw.lower() in ("1", "true", "yes")
        requests = await self.master.store.buildrequests(pending=pending, limit=self.int_argument("limit", 200))
        self.reply({"buildrequests": requests})


class CancelRequestHandler(ApiHandler):
    async def post(self, request_id: str) -> None:
        await self.master.cancel_request(int(request_id))
        self.reply({"cancelled": int(request_id)})


class WorkersHandler(ApiHandler):
    async def get(self) -> None:
        remembered = await self.master.store.workers()
        workers = []
        for spec in self.master.pipeline.workers:
            connection = self.master.registry.connections.get(spec.name)
            known = remembered.get(spec.name, {})
            workers.append(
                {
                    "name": spec.name,
                    "connected": connection is not None,
                    "connected_at": connection.connected_at if connection else known.get("connected_at"),
                    "last_seen": connection.last_seen if connection else known.get("last_seen"),
                    "info": connection.info if connection else known.get("info", {}),
                    "running_builds": [
                        {"id": b.id, "builder": b.builder, "number": b.number}
                        for b in self.master.running.values()
                        if b.worker == spec.name
                    ],
                }
            )
        self.reply({"workers": workers})


class ReconfigHandler(ApiHandler):
    async def post(self) -> None:
        await self.master.reload()
        pipeline = self.master.pipeline
        self.reply(
            {"builders": [b.name for b in pipeline.builders], "schedulers": [s.name for s in pipeline.schedulers]}
        )


class NotFoundHandler(ApiHandler):
    def prepare(self) -> None:
        raise NotFound(f"no such endpoint: {self.request.method} {self.request.path}")


def _parse_result(raw: str) -> Result:
    try:
        return Result(int(raw)) if raw.isdigit() else Result[raw.upper()]
    except (KeyError, ValueError):
        raise InvalidRequest(f"unknown result {raw!r}; use one of {[r.name for r in Result]}") from None


def routes(master: Master) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"master": master}
    return [
        (r"/api/?", IndexHandler, args),
        (r"/api/builders", BuildersHandler, args),
        (r"/api/builders/([^/]+)", BuildersHandler, args),
        (r"/api/builders/([^/]+)/force", ForceHandler, args),
        (r"/api/builds", BuildsHandler, args),
        (r"/api/builds/(\d+)", BuildHandler, args),
        (r"/api/builds/(\d+)/stop", StopBuildHandler, args),
        (r"/api/builds/(\d+)/steps/(\d+)/log", LogHandler, args),
        (r"/api/buildrequests", BuildRequestsHandler, args),
        (r"/api/buildrequests/(\d+)/cancel", CancelRequestHandler, args),
        (r"/api/changes", ChangesHandler, args),
        (r"/api/workers", WorkersHandler, args),
        (r"/api/reconfig", ReconfigHandler, args),
        (r"/api/.*", NotFoundHandler, args),
    ]
