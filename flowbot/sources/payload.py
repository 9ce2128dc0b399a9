"""Reading webhook deliveries: JSON bodies and the fields GitHub and GitLab put in them.

Every reader raises :class:`~flowbot.errors.InvalidRequest` naming what is missing or of the wrong
type, so a delivery a hook cannot read is answered 400 with the reason, never 500.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from ..defaults import MAX_JSON_DEPTH
from ..errors import InvalidRequest
from ..text import why_unkeepable

_REF = re.compile(r"^refs/(heads|tags)/(.+)$")
_MISSING = object()


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers by their lower-case names."""
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


def form_payload(body: bytes) -> bytes:
    """The JSON in the ``payload`` field of a form-encoded delivery."""
    try:
        return parse_qs(body.decode("utf-8"), strict_parsing=True)["payload"][0].encode()
    except (ValueError, KeyError, UnicodeDecodeError):
        raise InvalidRequest("a form-encoded delivery must have a payload field") from None


def payload(body: bytes) -> dict[str, Any]:
    """The event's JSON object."""
    value = read_json(body)
    if not isinstance(value, dict):
        raise InvalidRequest("the payload must be a JSON object")
    return value


def get(data: dict[str, Any], path: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """The value at ``path`` (``"pull_request.head.sha"``) of a payload, of type ``kind``.

    A missing or null value is ``default`` when one is given.

    Raises:
        InvalidRequest: the value is missing (with no default), or not of type ``kind``.
    """
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            if default is _MISSING:
                raise InvalidRequest(f"the payload has no {path}")
            return default
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
        raise InvalidRequest(f"the payload's {path} must be {_name(kind)}, not {type(value).__name__}")
    return value


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a number", bool: "true or false", dict: "an object", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in _types(kind))


def ref(data: dict[str, Any]) -> tuple[str, str]:
    """A push's ref and the branch or tag it names."""
    value = data.get("ref")
    if not isinstance(value, str) or not (match := _REF.match(value)):
        raise InvalidRequest(f"the push names no branch or tag (ref {value!r})")
    return value, match.group(2)


def commits(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A push's commits."""
    value = data.get("commits") or []
    if not isinstance(value, list):
        raise InvalidRequest("commits must be a list")
    if not all(isinstance(commit, dict) for commit in value):
        raise InvalidRequest("commits must be a list of objects")
    return value


def commit_id(commit: dict[str, Any]) -> str:
    value = commit.get("id")
    if not isinstance(value, str) or not value:
        raise InvalidRequest("a commit has no id")
    return value


def person(value: Any) -> str:
    """``Name <email>`` as git writes it."""
    if not isinstance(value, dict):
        return ""
    name, email = str(value.get("name") or ""), str(value.get("email") or "")
    return f"{name} <{email}>" if email else name


def files(commit: dict[str, Any]) -> tuple[str, ...]:
    """The files a pushed commit added, changed or removed."""
    found: list[str] = []
    for kind in ("added", "modified", "removed"):
        for path in commit.get(kind) or []:
            if isinstance(path, str) and path not in found:
                found.append(path)
    return tuple(found)


def timestamp(value: Any) -> float:
    """Epoch seconds of an ISO 8601 time (now, when there is none)."""
    if not value:
        return dt.datetime.now(dt.UTC).timestamp()
    try:
        stamp = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidRequest(f"timestamp {value!r} is not an ISO 8601 time") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()
