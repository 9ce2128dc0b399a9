"""A small client of the master's HTTP API, for the CLI, scripts and notebooks.

It uses only the standard library, so ``flowbot sendchange`` starts fast and works anywhere.
Against a master that limits control actions, give it an API token (``token=`` or the
``FLOWBOT_TOKEN`` environment variable); it goes in an ``Authorization: Bearer`` header. The
master's address comes from ``url=``, else ``FLOWBOT_MASTER``, else ``http://127.0.0.1:8010``; an
address without a scheme (``ci:8010``) is taken as ``http://``.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any

from .defaults import MASTER_URL
from .errors import FlowbotError, Forbidden, InvalidRequest, NotFound, Unauthorized

#: The environment variable the client takes its API token from when none is given.
TOKEN_VARIABLE = "FLOWBOT_TOKEN"
#: The environment variable the client takes the master's address from when none is given.
MASTER_VARIABLE = "FLOWBOT_MASTER"


class MasterUnreachable(FlowbotError):
    """Nothing answers at the master's URL."""


def master_url(address: str | None = None) -> str:
    """The master's base URL from ``address``, ``$FLOWBOT_MASTER`` or the default; ``host:port``
    (no scheme) means ``http://host:port``."""
    address = (address or os.environ.get(MASTER_VARIABLE) or MASTER_URL).strip()
    if "://" not in address:
        address = "http://" + address
    parsed = urllib.parse.urlsplit(address)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidRequest(f"{address!r} is not the master's HTTP address (http://HOST:PORT)")
    return address.rstrip("/")


class Client:
    """Talks to the master at ``url`` (``$FLOWBOT_MASTER``, else ``http://127.0.0.1:8010``).

    Args:
        token: an API token for control actions; defaults to ``$FLOWBOT_TOKEN``.
    """

    def __init__(self, url: str | None = None, timeout: float = 30.0, token: str | None = None):
        self.url = master_url(url)
        self.timeout = timeout
        self._token = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None

    def __repr__(self) -> str:
        return f"Client({self.url!r}, token={'set' if self._token else None})"

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, Any] | None = None
    ) -> Any:
        """One API call; returns the decoded JSON (or text) of the answer.

        Raises:
            NotFound: 404 from the master. Unauthorized: 401 (credentials needed).
            Forbidden: 403 (wrong credentials). InvalidRequest: any other 4xx.
            MasterUnreachable: no master answers. FlowbotError: a 5xx.
        """
        with self._open(method, path, body, query) as answer:
            raw = answer.read()
            kind = answer.headers.get("Content-Type", "")
        return json.loads(raw) if kind.startswith("application/json") else raw.decode()

    def _open(
        self, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, Any] | None = None
    ) -> Any:
        """The master's answer to one call, to be read (and closed) by the caller; raises as :meth:`request`."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            with exc:  # it holds the connection: close it, or it lingers until collected
                message = _error_message(exc)
            if exc.code == 404:
                raise NotFound(message) from None
            if exc.code == 401:
                raise Unauthorized(f"{message} (give a token with --token or ${TOKEN_VARIABLE})") from None
            if exc.code == 403:
                raise Forbidden(message) from None
            if 400 <= exc.code < 500:
                raise InvalidRequest(message) from None
            raise FlowbotError(f"the master failed ({exc.code}): {message}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MasterUnreachable(f"no master answers at {self.url} ({reason}); is it running?") from None

    # -- the calls the CLI makes ----------------------------------------------------------------

    def sendchange(self, **change: Any) -> dict[str, Any]:
        """Submit a change (``branch``, ``revision``, ``author``, ``comments``, ``files``...)."""
        return self.request("POST", "/api/changes", change)

    def force(self, builder: str, **fields: Any) -> list[int]:
        """Force a build of ``builder``; returns the new build request ids."""
        path = f"/api/builders/{urllib.parse.quote(builder, safe='')}/force"
        return self.request("POST", path, fields)["buildrequest_ids"]

    def stop(self, build_id: int, reason: str = "") -> None:
        """Stop a running build; it ends as CANCELLED."""
        self.request("POST", f"/api/builds/{int(build_id)}/stop", {"reason": reason} if reason else {})

    def approve(self, build_id: int, comment: str = "", properties: dict[str, Any] | None = None) -> dict[str, Any]:
        """Approve a build that waits for approval, with the values of its form."""
        body = {"comment": comment, "properties": properties or {}}
        return self.request("POST", f"/api/builds/{int(build_id)}/approve", body)

    def reject(self, build_id: int, comment: str = "") -> dict[str, Any]:
        """Reject a build that waits for approval; it fails."""
        return self.request("POST", f"/api/builds/{int(build_id)}/reject", {"comment": comment})

    def rebuild(self, build_id: int, reason: str = "") -> list[int]:
        """Request a build again with the same sources and properties; returns the new request ids."""
        body = {"reason": reason} if reason else {}
        return self.request("POST", f"/api/builds/{int(build_id)}/rebuild", body)["buildrequest_ids"]

    def pause_worker(self, name: str, reason: str = "") -> dict[str, Any]:
        """Give a worker no new builds until it is unpaused; returns its state."""
        return self.request("POST", _worker_path(name, "pause"), {"reason": reason} if reason else {})

    def unpause_worker(self, name: str) -> dict[str, Any]:
        """Let a paused worker take builds again; returns its state."""
        return self.request("POST", _worker_path(name, "unpause"), {})

    def shutdown_worker(self, name: str, graceful: bool = True) -> dict[str, Any]:
        """Make a worker exit once its builds end (``graceful``) or now (they run again elsewhere)."""
        return self.request("POST", _worker_path(name, "shutdown"), {"graceful": graceful})

    def build(self, ref: int | str) -> dict[str, Any]:
        """One build with its steps, named by id (``42``) or as ``builder/number`` (``unit/7``)."""
        return self.request("GET", build_path(ref))

    def build_id(self, ref: int | str) -> int:
        """The id of the build ``ref`` names (an id is taken as it is)."""
        return int(ref) if _is_id(ref) else self.build(ref)["id"]

    def buildrequest(self, request_id: int) -> dict[str, Any]:
        """One build request, whether it is done, and its builds (a retried request has several)."""
        return self.request("GET", f"/api/buildrequests/{int(request_id)}")

    def log_lines(
        self, build_id: int, step: int, *, first: int | None = 0, count: int = 1000, log: str = "stdio"
    ) -> dict[str, Any]:
        """A page of a step's log (step numbers count from 0): ``{"first", "lines": [[tag, text]...], "total"}``;
        ``first=None`` for its last ``count`` lines."""
        query = {"log": log, "count": count, "first": first} if first is not None else {"log": log, "tail": count}
        return self.request("GET", f"/api/builds/{int(build_id)}/steps/{int(step)}/lines", query=query)

    def copy_log(self, build_id: int, step: int, out: IO[bytes], log: str = "stdio") -> None:
        """Write a step's whole log to ``out`` as it comes, never holding it all."""
        with self._open("GET", f"/api/builds/{int(build_id)}/steps/{int(step)}/log", query={"name": log}) as answer:
            shutil.copyfileobj(answer, out)

    def builders(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/builders")["builders"]

    def builds(self, **query: Any) -> list[dict[str, Any]]:
        return self.request("GET", "/api/builds", query=query)["builds"]

    def workers(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/workers")["workers"]

    def instances(self) -> list[dict[str, Any]]:
        """The instances of workers started on demand (name, worker, kind, state, since, builds, reason)."""
        return self.request("GET", "/api/instances")["instances"]

    def buildrequests(self, pending: bool = True) -> list[dict[str, Any]]:
        return self.request("GET", "/api/buildrequests", query={"pending": str(pending).lower()})["buildrequests"]


def _is_id(ref: int | str) -> bool:
    return isinstance(ref, int) or str(ref).strip().isdigit()


def build_path(ref: int | str) -> str:
    """The API path of the build ``ref`` names: an id, or ``builder/number``.

    Raises:
        InvalidRequest: ``ref`` is neither.
    """
    if _is_id(ref):
        return f"/api/builds/{int(ref)}"
    builder, sep, number = str(ref).rpartition("/")
    if not sep or not builder or not number.isdigit():
        raise InvalidRequest(f"{ref!r} names no build: give its id (42) or BUILDER/NUMBER (unit/7)")
    return f"/api/builders/{urllib.parse.quote(builder, safe='')}/builds/{int(number)}"


def _worker_path(name: str, action: str) -> str:
    return f"/api/workers/{urllib.parse.quote(name, safe='')}/{action}"


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read())["error"]
    except (ValueError, KeyError, TypeError, OSError):
        return f"HTTP {exc.code} {exc.reason}"
