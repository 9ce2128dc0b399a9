"""Webhook change sources: GitHub and GitLab push events, and a generic JSON hook.

A webhook is a change source that the master's HTTP server feeds: a delivery to ``POST
/hooks/NAME`` is handed to the running source named NAME, which checks it (signature or token)
and turns it into changes. This module only parses and checks bytes and headers; it knows
nothing of HTTP servers, so every rule here can be tested without one.

Pushes that delete a branch or a tag start no build, and neither does GitHub's ``ping``. A
delivery sent again (GitHub's and GitLab's "redeliver", a tool's retry) carries the id of the
first, and makes no change twice: each hook remembers the ids of its last deliveries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from ..defaults import MAX_JSON_DEPTH, WEBHOOK_DELIVERIES_KEPT
from ..errors import Forbidden, InvalidRequest
from ..records import Change
from ..text import why_unkeepable
from .base import ChangeSource, SourceContext

log = logging.getLogger(__name__)

_ZEROS = re.compile(r"^0+$")
_REF = re.compile(r"^refs/(heads|tags)/(.+)$")


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery amounts to: the changes it makes, and a word on why when there are none."""

    changes: list[Change] = field(default_factory=list)
    note: str = ""


class Webhook(ChangeSource):
    """Base class of webhook sources: the master delivers requests to ``/hooks/<name>``.

    A subclass implements :meth:`parse`.
    """

    #: Headers that name a delivery, the same when it is sent again; the first one present counts.
    delivery_headers: tuple[str, ...] = ("idempotency-key",)

    def __init__(self, name: str):
        super().__init__(name)
        self._context: SourceContext | None = None
        self._one_at_a_time = asyncio.Lock()  # deliveries read and extend the list of those seen

    async def start(self, context: SourceContext) -> None:
        self._context = context

    async def stop(self) -> None:
        self._context = None

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """Check a delivery and turn it into changes.

        Raises:
            Forbidden: the signature or token is missing or wrong.
            InvalidRequest: the delivery is not what this hook understands.
        """
        raise NotImplementedError

    async def deliver(self, headers: Mapping[str, str], body: bytes) -> tuple[list[int], str]:
        """Parse a delivery and submit its changes; returns their ids (in order) and the note.

        A delivery whose id this hook has seen makes no change. The id is remembered with the
        delivery's last change, in the same transaction: a master that stops half way through a
        delivery takes it again in full, rather than lose part of it.
        """
        context = self._context
        if context is None:
            raise InvalidRequest(f"webhook {self.name!r} is not running")
        headers = _lower(headers)
        delivery = self.parse(headers, body)
        key = next((headers[h] for h in self.delivery_headers if headers.get(h)), None)
        if key is None or not delivery.changes:
            return [await context.add_change(change) for change in delivery.changes], delivery.note
        async with self._one_at_a_time:
            seen = (await context.get_state()).get("deliveries", [])
            if key in seen:
                return [], f"delivery {key} was received before; its changes are not made again"
            remembered = {"deliveries": [*seen[-(WEBHOOK_DELIVERIES_KEPT - 1) :], key]}
            *first, last = delivery.changes
            ids = [await context.add_change(change) for change in first]
            ids.append(await context.add_change(last, remembered))
        return ids, delivery.note


class GitHubHook(Webhook):
    """GitHub ``push`` events (and ``ping``), at ``POST /hooks/<name>``.

    Args:
        secret: the webhook's secret; when set, ``X-Hub-Signature-256`` must be the HMAC-SHA256
            of the body under it, or the delivery is refused (403).
        name: the last part of the hook's URL.
    """

    delivery_headers = ("x-github-delivery",)

    def __init__(self, secret: str | None = None, name: str = "github"):
        super().__init__(name)
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ValueError("GitHubHook secret must be a non-empty string (or None for no check)")
        self.secret = secret

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        headers = _lower(headers)
        event = headers.get("x-github-event")
        if not event:
            raise InvalidRequest("not a GitHub delivery: it has no X-GitHub-Event header")
        if self.secret is not None:
            _check_signature(self.secret, headers.get("x-hub-signature-256"), body)
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            body = _form_payload(body)  # GitHub's other content type
        payload = _payload(body)
        if event == "ping":
            return Delivery(note="pong")
        if event != "push":
            return Delivery(note=f"{event!r} events start no builds")
        ref, branch = _ref(payload)
        if payload.get("deleted") or _ZEROS.match(str(payload.get("after", ""))):
            return Delivery(note=f"{ref} was deleted; nothing to build")
        repository = _object(payload, "repository")
        changes = []
        for commit in _list(payload, "commits"):
            if not isinstance(commit, dict):
                raise InvalidRequest("commits must be a list of objects")
            if not commit.get("distinct", True):  # already pushed to another branch: built there
                continue
            changes.append(
                Change(
                    branch=branch,
                    revision=_text(commit, "id"),
                    repository=str(repository.get("html_url") or repository.get("url") or ""),
                    project=str(repository.get("full_name") or ""),
                    author=_person(commit.get("author")),
                    committer=_person(commit.get("committer")),
                    comments=str(commit.get("message") or ""),
                    files=_files(commit),
                    revlink=str(commit.get("url") or ""),
                    when=_timestamp(commit.get("timestamp")),
                    properties={"event": "push"},
                )
            )
        return Delivery(changes, "" if changes else f"no new commits on {ref}")


class GitLabHook(Webhook):
    """GitLab push and tag push events, at ``POST /hooks/<name>``.

    Args:
        token: the webhook's secret token; when set, ``X-Gitlab-Token`` must equal it, or the
            delivery is refused (403).
        name: the last part of the hook's URL.
    """

    delivery_headers = ("idempotency-key", "x-gitlab-event-uuid")

    def __init__(self, token: str | None = None, name: str = "gitlab"):
        super().__init__(name)
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("GitLabHook token must be a non-empty string (or None for no check)")
        self.token = token

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        headers = _lower(headers)
        if self.token is not None:
            _check_token(self.token, headers.get("x-gitlab-token"), "X-Gitlab-Token")
        event = headers.get("x-gitlab-event")
        if not event:
            raise InvalidRequest("not a GitLab delivery: it has no X-Gitlab-Event header")
        payload = _payload(body)
        if payload.get("object_kind") not in ("push", "tag_push"):
            return Delivery(note=f"{event!r} events start no builds")
        ref, branch = _ref(payload)
        if _ZEROS.match(str(payload.get("after", ""))):
            return Delivery(note=f"{ref} was deleted; nothing to build")
        project = payload.get("project") if isinstance(payload.get("project"), dict) else {}
        repository = payload.get("repository") if isinstance(payload.get("repository"), dict) else {}
        url = project.get("git_http_url") or repository.get("git_http_url") or repository.get("url") or ""
        changes = []
        for commit in _list(payload, "commits"):
            if not isinstance(commit, dict):
                raise InvalidRequest("commits must be a list of objects")
            changes.append(
                Change(
                    branch=branch,
                    revision=_text(commit, "id"),
                    repository=str(url),
                    project=str(project.get("path_with_namespace") or repository.get("name") or ""),
                    author=_person(commit.get("author")),
                    comments=str(commit.get("message") or ""),
                    files=_files(commit),
                    revlink=str(commit.get("url") or ""),
                    when=_timestamp(commit.get("timestamp")),
                    properties={"event": payload["object_kind"]},
                )
            )
        return Delivery(changes, "" if changes else f"no new commits on {ref}")


class JsonHook(Webhook):
    """Changes posted as JSON by any tool, at ``POST /hooks/<name>``.

    The body is one change or a list of them, with the fields of ``POST /api/changes``:
    ``repository, branch, revision, project, codebase, author, committer, comments, files,
    category, revlink, when, properties``.

    Args:
        name: the last part of the hook's URL.
        token: when set, the request must carry ``Authorization: Bearer <token>``, or it is
            refused (403).
    """

    _TEXT = ("repository", "project", "codebase", "author", "committer", "comments", "revlink")
    _OPTIONAL_TEXT = ("branch", "revision", "category")

    def __init__(self, name: str = "changes", token: str | None = None):
        super().__init__(name)
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("JsonHook token must be a non-empty string (or None for no check)")
        self.token = token

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        headers = _lower(headers)
        if self.token is not None:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            _check_token(self.token, given.strip() if scheme.lower() == "bearer" else None, "Authorization: Bearer")
        payload = read_json(body)
        if isinstance(payload, list):
            changes = [self.change(item, f"change {n}: ") for n, item in enumerate(payload)]
        else:
            changes = [self.change(payload)]
        return Delivery(changes, "" if changes else "an empty list: nothing to build")

    @classmethod
    def change(cls, item: Any, where: str = "") -> Change:
        """One change from its JSON object.

        Raises:
            InvalidRequest: a field is unknown or of the wrong type.
        """
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}a change must be a JSON object")
        unknown = set(item) - {*cls._TEXT, *cls._OPTIONAL_TEXT, "files", "properties", "when"}
        if unknown:
            raise InvalidRequest(f"{where}unknown field(s) {sorted(unknown)}")
        fields: dict[str, Any] = {}
        for key in cls._TEXT:
            if key in item:
                if not isinstance(item[key], str):
                    raise InvalidRequest(f"{where}{key} must be a string")
                fields[key] = item[key]
        for key in cls._OPTIONAL_TEXT:
            if item.get(key) is not None:
                if not isinstance(item[key], str):
                    raise InvalidRequest(f"{where}{key} must be a string or null")
                fields[key] = item[key]
        files = item.get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise InvalidRequest(f"{where}files must be a list of strings")
        properties = item.get("properties", {})
        if not isinstance(properties, dict):
            raise InvalidRequest(f"{where}properties must be an object")
        when = item.get("when")
        if when is not None:
            if not isinstance(when, (int, float)) or isinstance(when, bool):
                raise InvalidRequest(f"{where}when must be a number (epoch seconds)")
            fields["when"] = float(when)
        return Change(files=tuple(files), properties=properties, **fields)


# -- checks -------------------------------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _check_signature(secret: str, given: str | None, body: bytes) -> None:
    if not given:
        raise Forbidden("the delivery has no X-Hub-Signature-256 header, and this hook has a secret")
    if not hmac.compare_digest(sign(secret, body).encode(), given.strip().encode("utf-8", "replace")):
        raise Forbidden("the X-Hub-Signature-256 signature does not match the body under this hook's secret")


def _check_token(expected: str, given: str | None, header: str) -> None:
    if not given:
        raise Forbidden(f"the delivery has no {header} token, and this hook requires one")
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise Forbidden(f"the {header} token is wrong")


# -- payloads -----------------------------------------------------------------------------------


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def read_json(body: bytes) -> Any:
    """The JSON value of a request body, as both stores can keep it.

    Raises:
        InvalidRequest: the body is not JSON, nests more than :data:`MAX_JSON_DEPTH` levels deep,
            holds NaN or Infinity (not JSON, though Python writes them), or a string that no
            database can keep (see :mod:`flowbot.text`), named by where it is (``commits[0].author``).
    """
    too_deep = InvalidRequest(f"the body's JSON is nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise too_deep from None
    # Each item comes with its depth and where it is: (where its container is, its key or index).
    items: list[tuple[Any, int, _Where]] = [(value, 1, None)] if isinstance(value, _NESTED) else []
    while items:
        item, depth, where = items.pop()
        if isinstance(item, str):
            if (why := why_unkeepable(item)) is not None:
                raise InvalidRequest(f"{_field(where)} {why}")
            continue
        if depth > MAX_JSON_DEPTH:
            raise too_deep
        if isinstance(item, list):
            items += [(child, depth + 1, (where, n)) for n, child in enumerate(item) if isinstance(child, _NESTED)]
            continue
        for key, child in item.items():
            if (why := why_unkeepable(key)) is not None:
                raise InvalidRequest(f"a key of {_field(where)} {why}")
            if isinstance(child, _NESTED):
                items.append((child, depth + 1, (where, key)))
    return value


#: Where a value is in a JSON document: None for the whole of it, else its container's place and
#: its key or index there (built as the document is walked, spelled out only for an error).
_Where = tuple["_Where", str | int] | None
_NESTED = (str, dict, list)


def _field(where: _Where) -> str:
    """``commits[0].author.name``: a place in a JSON document as a person would write it."""
    parts: list[str] = []
    while where is not None:
        where, key = where
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts)).removeprefix(".") or "the body"


def _refuse_constant(name: str) -> Any:
    raise InvalidRequest(f"the body's JSON holds {name}, which JSON does not allow")


def _form_payload(body: bytes) -> bytes:
    """The JSON in the ``payload`` field of a form-encoded delivery."""
    try:
        return parse_qs(body.decode("utf-8"), strict_parsing=True)["payload"][0].encode()
    except (ValueError, KeyError, UnicodeDecodeError):
        raise InvalidRequest("a form-encoded delivery must have a payload field") from None


def _payload(body: bytes) -> dict[str, Any]:
    """The event's JSON object."""
    payload = read_json(body)
    if not isinstance(payload, dict):
        raise InvalidRequest("the payload must be a JSON object")
    return payload


def _ref(payload: dict[str, Any]) -> tuple[str, str]:
    ref = payload.get("ref")
    if not isinstance(ref, str) or not (match := _REF.match(ref)):
        raise InvalidRequest(f"the push names no branch or tag (ref {ref!r})")
    return ref, match.group(2)


def _object(payload: dict[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    if not isinstance(value, dict):
        raise InvalidRequest(f"the payload has no {key} object")
    return value


def _list(payload: dict[str, Any], key: str) -> list[Any]:
    value = payload.get(key) or []
    if not isinstance(value, list):
        raise InvalidRequest(f"{key} must be a list")
    return value


def _text(commit: dict[str, Any], key: str) -> str:
    value = commit.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"a commit has no {key}")
    return value


def _person(person: Any) -> str:
    """``Name <email>`` as git writes it."""
    if not isinstance(person, dict):
        return ""
    name, email = str(person.get("name") or ""), str(person.get("email") or "")
    return f"{name} <{email}>" if email else name


def _files(commit: dict[str, Any]) -> tuple[str, ...]:
    files: list[str] = []
    for kind in ("added", "modified", "removed"):
        for path in commit.get(kind) or []:
            if isinstance(path, str) and path not in files:
                files.append(path)
    return tuple(files)


def _timestamp(value: Any) -> float:
    if not value:
        return dt.datetime.now(dt.UTC).timestamp()
    try:
        stamp = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidRequest(f"commit timestamp {value!r} is not an ISO 8601 time") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()
