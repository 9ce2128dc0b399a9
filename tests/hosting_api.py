"""A local HTTP server standing in for GitHub's and GitLab's REST APIs, which checks what it is sent.

It plays the parts of the APIs the reporters use, as their documentation describes them:

- ``POST /app/installations/{id}/access_tokens`` (GitHub): the ``Authorization: Bearer`` JWT must
  be signed RS256 with the App's private key (checked with its public key), name the App as its
  issuer, and live ten minutes at most; the answer is a new installation token and its expiry.
- ``POST /repos/{owner}/{repo}/check-runs`` and ``PATCH .../check-runs/{id}`` (GitHub): a token
  it issued (or the one it was given) must authorize them; the fields must be GitHub's (a 40-hex
  ``head_sha``, a known ``status`` and ``conclusion``, an ``output`` with ``title`` and
  ``summary``, at most 50 annotations each with a path, lines and a level), or 422.
- ``POST /api/v4/projects/{id}/statuses/{sha}`` (GitLab): ``PRIVATE-TOKEN`` must be the one given,
  the state one of GitLab's.

Every request is recorded; ``fail`` makes the next requests fail with the statuses given (a 403
then says, as GitHub's rate limit does, ``X-RateLimit-Remaining: 0``).
"""

from __future__ import annotations

import http.server
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

STATUSES = {"queued", "in_progress", "completed"}
CONCLUSIONS = {"action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale", "timed_out"}
LEVELS = {"notice", "warning", "failure"}
GITLAB_STATES = {"pending", "running", "success", "failed", "canceled", "skipped"}


@dataclass
class CheckRun:
    """A check run as the stand-in holds it: its fields as last set, and every annotation sent."""

    id: int
    repository: str
    fields: dict[str, Any]
    annotations: list[dict[str, Any]] = field(default_factory=list)


class Invalid(Exception):
    """A request GitHub or GitLab would refuse; the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class HostingAPI:
    """The stand-in, on a free loopback port.

    Args:
        app_id: the GitHub App whose JWTs it takes.
        public_key: the App's public key (PEM), to check the JWTs' signatures.
        token: a token it takes as it is (for reporters given one instead of an App).
        token_lifetime: seconds the installation tokens it issues are valid.
    """

    def __init__(
        self,
        *,
        app_id: int = 0,
        public_key: bytes = b"",
        token: str | None = None,
        token_lifetime: float = 3600.0,
    ):
        self.app_id = app_id
        self.public_key = public_key
        self.tokens: dict[str, float] = {token: float("inf")} if token else {}
        self.token_lifetime = token_lifetime
        self.requests: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.check_runs: dict[int, CheckRun] = {}
        self.statuses: list[dict[str, Any]] = []
        self.failing: list[int] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                api._handle(self, "POST")

            def do_PATCH(self) -> None:
                api._handle(self, "PATCH")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, in turn (0: answer that one as usual)."""
        self.failing.extend(statuses)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests_to(self, pattern: str, method: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if re.search(pattern, r["path"]) and method in (None, r["method"])]

    # -- serving --------------------------------------------------------------------------------

    def _handle(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            record = {"method": method, "path": handler.path, "headers": headers, "time": time.time()}
            try:
                record["json"] = payload = json.loads(body)
            except ValueError:
                record["json"] = payload = None
            try:
                if self.failing and (told := self.failing.pop(0)):
                    raise Invalid(told, "the stand-in was told to fail this one")
                status, answer = self._route(method, handler.path, headers, payload)
            except Invalid as exc:
                status, answer = exc.status, {"message": str(exc)}
                limited = status == 403
                if exc.status < 500:
                    self.refused.append(f"{method} {handler.path}: {exc}")
            else:
                limited = False
            record["status"] = status
            self.requests.append(record)
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        if limited:
            handler.send_header("X-RateLimit-Remaining", "0")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method: str, path: str, headers: dict[str, str], payload: Any) -> tuple[int, Any]:
        if match := re.fullmatch(r"/app/installations/(\d+)/access_tokens", path):
            return self._token_for(headers, int(match.group(1)))
        if match := re.fullmatch(r"/repos/([^/]+/[^/]+)/check-runs", path):
            self._authorized(headers)
            return self._new_check_run(match.group(1), payload)
        if match := re.fullmatch(r"/repos/([^/]+/[^/]+)/check-runs/(\d+)", path):
            self._authorized(headers)
            return self._update_check_run(match.group(1), int(match.group(2)), payload)
        if match := re.fullmatch(r"/api/v4/projects/([^/]+)/statuses/([0-9a-f]{40})", path):
            if headers.get("private-token") not in self.tokens:
                raise Invalid(401, "401 Unauthorized")
            return self._gitlab_status(match.group(1), match.group(2), payload)
        raise Invalid(404, "Not Found")

    # -- GitHub ----------------------------------------------------------------------------------

    def _token_for(self, headers: dict[str, str], installation: int) -> tuple[int, Any]:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme != "Bearer":
            raise Invalid(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(
                token, self.public_key, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"]}
            )
        except jwt.PyJWTError as exc:
            raise Invalid(401, f"A JSON web token could not be decoded: {exc}") from None
        if str(claims["iss"]) != str(self.app_id):
            raise Invalid(401, f"the JWT's issuer {claims['iss']!r} is not App {self.app_id}")
        if claims["exp"] - claims["iat"] > 600 or claims["iat"] > time.time() + 1:
            raise Invalid(401, "'Expiration time' claim ('exp') is too far in the future")
        token = f"ghs_{next(self._ids)}_installation{installation}"
        expires = time.time() + self.token_lifetime
        self.tokens[token] = expires
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        return 201, {"token": token, "expires_at": stamp}

    def _authorized(self, headers: dict[str, str]) -> None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme not in ("Bearer", "token") or token not in self.tokens:
            raise Invalid(401, "Bad credentials")
        if self.tokens[token] < time.time():
            raise Invalid(401, "Bad credentials (the token expired)")
        if headers.get("accept") != "application/vnd.github+json":
            raise Invalid(415, "Accept must be application/vnd.github+json")

    def _new_check_run(self, repository: str, payload: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str) or not payload["name"]:
            raise Invalid(422, "name is missing")
        if not re.fullmatch(r"[0-9a-f]{40}", str(payload.get("head_sha"))):
            raise Invalid(422, f"head_sha {payload.get('head_sha')!r} is not a commit")
        self._check_fields(payload)
        run = CheckRun(next(self._ids), repository, {})
        self._apply(run, payload)
        self.check_runs[run.id] = run
        return 201, {"id": run.id, "name": payload["name"], "head_sha": payload["head_sha"]}

    def _update_check_run(self, repository: str, run_id: int, payload: Any) -> tuple[int, Any]:
        run = self.check_runs.get(run_id)
        if run is None or run.repository != repository:
            raise Invalid(404, "Not Found")
        if not isinstance(payload, dict):
            raise Invalid(422, "the body must be an object")
        self._check_fields(payload)
        self._apply(run, payload)
        return 200, {"id": run.id}

    def _check_fields(self, payload: dict[str, Any]) -> None:
        status = payload.get("status", "queued")
        if status not in STATUSES:
            raise Invalid(422, f"status {status!r} is not one of {sorted(STATUSES)}")
        conclusion = payload.get("conclusion")
        if status == "completed" and conclusion not in CONCLUSIONS:
            raise Invalid(422, f"a completed check run needs a conclusion among {sorted(CONCLUSIONS)}")
        for key in ("started_at", "completed_at"):
            if key in payload and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(payload[key])):
                raise Invalid(422, f"{key} {payload[key]!r} is not an ISO 8601 timestamp")
        output = payload.get("output")
        if output is None:
            return
        if not isinstance(output.get("title"), str) or not isinstance(output.get("summary"), str):
            raise Invalid(422, "output needs a title and a summary")
        if len(output["summary"]) > 65535 or len(output.get("text") or "") > 65535:
            raise Invalid(422, "output.summary and output.text are 65535 characters at most")
        annotations = output.get("annotations", [])
        if len(annotations) > 50:
            raise Invalid(422, f"{len(annotations)} annotations: 50 at most per request")
        for note in annotations:
            if not (
                isinstance(note.get("path"), str)
                and note["path"]
                and isinstance(note.get("start_line"), int)
                and isinstance(note.get("end_line"), int)
                and 1 <= note["start_line"] <= note["end_line"]
                and note.get("annotation_level") in LEVELS
                and isinstance(note.get("message"), str)
                and note["message"]
            ):
                raise Invalid(422, f"annotation {note!r} lacks a path, lines, a level or a message")

    @staticmethod
    def _apply(run: CheckRun, payload: dict[str, Any]) -> None:
        output = dict(payload.get("output") or {})
        run.annotations += output.pop("annotations", [])
        run.fields.update({k: v for k, v in payload.items() if k != "output"})
        if output:
            run.fields["output"] = output

    # -- GitLab ----------------------------------------------------------------------------------

    def _gitlab_status(self, project: str, sha: str, payload: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict) or payload.get("state") not in GITLAB_STATES:
            raise Invalid(400, f"state is missing or not one of {sorted(GITLAB_STATES)}")
        self.statuses.append({"project": project, "sha": sha, **payload})
        return 201, {"id": len(self.statuses), "sha": sha, "status": payload["state"]}
