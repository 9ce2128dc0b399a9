"""Webhook change sources: the base class, and a generic JSON hook.

A webhook is a change source that the master's HTTP server feeds: a delivery to ``POST
/hooks/NAME`` is handed to the running source named NAME, which checks it (signature or token)
and turns it into a :class:`Delivery`: changes to make, and for pull requests what to do with the
work already asked for (cancel it, run it again). Parsing only reads bytes and headers and knows
nothing of HTTP servers, so every rule can be tested without one; GitHub's and GitLab's hooks are
in :mod:`.github` and :mod:`.gitlab`.

A delivery sent again (GitHub's and GitLab's "redeliver", a tool's retry) carries the id of the
first, and makes no change twice: each hook remembers the ids of its last deliveries. A hook also
remembers the last change of each open pull request, so that a person can ask for it to be built
again (a ``/retest`` comment) with a delivery that does not say which commit is the head.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..defaults import WEBHOOK_DELIVERIES_KEPT, WEBHOOK_PULL_REQUESTS_KEPT
from ..errors import Forbidden, InvalidRequest, NotFound
from ..fields import FILLED_TEXT, checked, optional
from ..pull_requests import PullRequest
from ..records import Change
from .base import ChangeSource, SourceContext, check_codebase
from .payload import lower, read_json

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rebuild:
    """A build that someone asked to run again (GitHub's "Re-run" of its check run)."""

    build_id: int
    #: The commit the build is known to have built, checked before it runs again.
    revision: str
    #: Who asked.
    by: str = ""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery amounts to: the changes it makes, what it does to the work already asked
    for, and a word on why when it does nothing."""

    changes: list[Change] = field(default_factory=list)
    note: str = ""
    #: A pull request closed (or merged): its pending requests are cancelled, its running builds stopped.
    closed: PullRequest | None = None
    #: A pull request whose last change someone asked to build again (a comment, a label).
    retest: PullRequest | None = None
    #: A build someone asked to run again.
    rebuild: Rebuild | None = None

    @property
    def acts(self) -> bool:
        """Whether the delivery does anything at all."""
        return bool(self.changes) or any(x is not None for x in (self.closed, self.retest, self.rebuild))


class Webhook(ChangeSource):
    """Base class of webhook sources: the master delivers requests to ``/hooks/<name>``.

    A subclass implements :meth:`parse`, and gives its changes :attr:`codebase`.

    Args:
        name: the last part of the hook's URL.
        codebase: the codebase of its changes (see :class:`~flowbot.sources.GitPoller`).
    """

    #: Headers that name a delivery, the same when it is sent again; the first one present counts.
    delivery_headers: tuple[str, ...] = ("idempotency-key",)

    def __init__(self, name: str, codebase: str = ""):
        super().__init__(name)
        self.codebase = check_codebase(codebase)
        self._context: SourceContext | None = None
        self._one_at_a_time = asyncio.Lock()  # deliveries read and extend what the hook remembers

    async def start(self, context: SourceContext) -> None:
        self._context = context

    async def stop(self) -> None:
        self._context = None

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """Check a delivery and say what it amounts to.

        Raises:
            Forbidden: the signature or token is missing or wrong.
            InvalidRequest: the delivery is not what this hook understands.
        """
        raise NotImplementedError

    async def deliver(self, headers: Mapping[str, str], body: bytes) -> tuple[list[int], str]:
        """Parse a delivery and act on it; returns the ids of the changes it made (in order) and a note.

        A delivery whose id this hook has seen does nothing. The id, and what the hook remembers of
        pull requests, are stored with the delivery's last change, in the same transaction: a master
        that stops half way through a delivery takes it again in full, rather than lose part of it.
        """
        context = self._context
        if context is None:
            raise InvalidRequest(f"webhook {self.name!r} is not running")
        headers = lower(headers)
        delivery = self.parse(headers, body)
        key = next((headers[h] for h in self.delivery_headers if headers.get(h)), None)
        pull_requests = delivery.closed or delivery.retest or any(_pull_request(c) for c in delivery.changes)
        if not delivery.acts or (key is None and not pull_requests and delivery.rebuild is None):
            return [await context.add_change(change) for change in delivery.changes], delivery.note
        async with self._one_at_a_time:
            state = await context.get_state()
            seen = state.get("deliveries", [])
            if key in seen:
                return [], f"delivery {key} was received before; its changes are not made again"
            remembered: dict[str, Any] = {}
            if key is not None:
                remembered["deliveries"] = [*seen[-(WEBHOOK_DELIVERIES_KEPT - 1) :], key]
            notes = [delivery.note] if delivery.note else []
            changes = list(delivery.changes)
            known = dict(state.get("pull_requests", {}))
            if delivery.retest is not None:
                last = known.get(delivery.retest.key)
                if last is None:
                    notes.append(f"no change of pull request #{delivery.retest.number} is known to build again")
                else:
                    again = JsonHook.change(last)
                    properties = {**again.properties, "action": "retest"}
                    changes.append(dataclasses.replace(again, when=time.time(), properties=properties))
            if delivery.closed is not None:
                notes.append(await self._close(context, delivery.closed))
                known.pop(delivery.closed.key, None)
            if delivery.rebuild is not None:
                notes.append(await self._rebuild(context, delivery.rebuild))
            for change in changes:
                request = _pull_request(change)
                if request is not None:
                    known.pop(request.key, None)  # the newest last, so the oldest are forgotten first
                    known[request.key] = _remembered(change)
            if pull_requests:
                remembered["pull_requests"] = dict(list(known.items())[-WEBHOOK_PULL_REQUESTS_KEPT:])
            if not changes:
                if remembered:
                    await context.set_state(remembered)
                return [], "; ".join(notes)
            *first, last_change = changes
            ids = [await context.add_change(change) for change in first]
            ids.append(await context.add_change(last_change, remembered or None))
        return ids, "; ".join(notes)

    async def _close(self, context: SourceContext, request: PullRequest) -> str:
        cancelled, stopped = await context.cancel_pull_request(
            request.repository, request.number, f"pull request #{request.number} was closed"
        )
        return (
            f"pull request #{request.number} closed: {cancelled} pending request(s) cancelled, "
            f"{stopped} running build(s) stopped"
        )

    async def _rebuild(self, context: SourceContext, rebuild: Rebuild) -> str:
        who = f" by {rebuild.by}" if rebuild.by else ""
        try:
            ids = await context.rebuild(rebuild.build_id, f"re-run asked{who}", revision=rebuild.revision)
        except (NotFound, InvalidRequest) as exc:
            return f"build {rebuild.build_id} is not run again: {exc}"
        return f"build {rebuild.build_id} runs again (request(s) {', '.join(map(str, ids))})"


def _pull_request(change: Change) -> PullRequest | None:
    return PullRequest.of(change.repository, change.properties)


def _remembered(change: Change) -> dict[str, Any]:
    """A change as :meth:`JsonHook.change` reads it back (its comments cut short: they are not built)."""
    fields = {key: getattr(change, key) for key in (*JsonHook._TEXT, *JsonHook._OPTIONAL_TEXT)}
    return fields | {"comments": change.comments[:200], "properties": change.properties}


class JsonHook(Webhook):
    """Changes posted as JSON by any tool, at ``POST /hooks/<name>``.

    The body is one change or a list of them, with the fields of ``POST /api/changes``:
    ``repository, branch, revision, project, codebase, author, committer, comments, files,
    category, revlink, when, properties``.

    Args:
        name: the last part of the hook's URL.
        token: when set, the request must carry ``Authorization: Bearer <token>``, or it is
            refused (403).
        codebase: the codebase of the changes that name none.
    """

    _TEXT = ("repository", "project", "codebase", "author", "committer", "comments", "revlink")
    _OPTIONAL_TEXT = ("branch", "revision", "category")

    @checked(token=optional(FILLED_TEXT))
    def __init__(self, name: str = "changes", token: str | None = None, codebase: str = ""):
        super().__init__(name, codebase)
        self.token = token

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        headers = lower(headers)
        if self.token is not None:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            check_token(self.token, given.strip() if scheme.lower() == "bearer" else None, "Authorization: Bearer")
        payload = read_json(body)
        items = payload if isinstance(payload, list) else [payload]
        changes = [self.change(item, f"change {n}: " if payload is items else "") for n, item in enumerate(items)]
        changes = [
            c if c.codebase or not self.codebase else dataclasses.replace(c, codebase=self.codebase) for c in changes
        ]
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


def check_signature(secret: str, given: str | None, body: bytes) -> None:
    if not given:
        raise Forbidden("the delivery has no X-Hub-Signature-256 header, and this hook has a secret")
    if not hmac.compare_digest(sign(secret, body).encode(), given.strip().encode("utf-8", "replace")):
        raise Forbidden("the X-Hub-Signature-256 signature does not match the body under this hook's secret")


def check_token(expected: str, given: str | None, header: str) -> None:
    if not given:
        raise Forbidden(f"the delivery has no {header} token, and this hook requires one")
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise Forbidden(f"the {header} token is wrong")
