"""``HttpStatusPush``: POST every build's start and end as JSON to a URL of your choice.

With ``body=``, what is posted is a template of your own (dicts, lists and strings, the strings in
``str.format`` style: ``"{headline} {url}"``), so any chat service that takes a webhook (Discord,
Mattermost, Teams, Rocket.Chat, Google Chat...) needs no code. A field the template names that
builds do not have is a configuration error, caught by checkconfig.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import ConfigError
from ..fields import ANYTHING, FLAG, SECONDS, TEXT, checked, mapping, optional
from ..properties import Renderable
from ..record_json import build_report_json
from ..records import Build
from .base import Reporter
from .summary import headline, took
from .transport import send_json

#: What a body template may name, each with what it holds.
FIELDS = {
    "event": "started or finished",
    "id": "the build's id",
    "builder": "the builder's name",
    "number": "the build's number in its builder",
    "worker": "the worker's name",
    "result": "SUCCESS, FAILURE... (RUNNING when it starts)",
    "previous_result": "the result of the builder's build before (mode 'problem' only)",
    "branch": "the branch built",
    "revision": "the revision built",
    "reason": "why it was built",
    "url": "the build's page",
    "duration": "how long it took, as people say it",
    "headline": "the build in one line: FAILURE: unit #12 on main (1a2b3c4)",
    "properties": "the build's properties, {properties[name]} (empty when it has none of that name)",
}


class HttpStatusPush(Reporter):
    """POST ``{"event": "started" | "finished", "build": {...}}`` to ``url``.

    A finished build lists its ``artifacts`` (path, size, SHA-256 and download URL of each file it
    stored on the master).

    The build is :meth:`Build.to_dict`. A failed POST is retried with back-off (see
    :class:`~flowbot.reporters.Reporter`); an endpoint that answers 4xx is not retried.

    Args:
        url: where to POST; a secret, ``Interpolate("%(secret:hook_url)s")``, for URLs that carry
            a token (chat webhooks do): then the URL is never logged, errors say "the secret URL".
        headers: extra headers, e.g. ``{"Authorization": Interpolate("Bearer %(secret:hook_token)s")}``
            (values may refer to the pipeline's secrets; never logged).
        body: a template of what to post instead of the build as JSON: dicts, lists and strings,
            each string filled in ``str.format`` style with the fields of :data:`FIELDS`, e.g.
            ``{"content": "{headline} {url}"}`` for Discord.
        started: also report builds as they start (in mode ``"all"`` only, where each start is
            followed by its end).
        timeout: seconds per POST.
        name, builders, mode, attempts, backoff: as for :class:`~flowbot.reporters.Reporter`.
    """

    wants_artifacts = True

    @checked(
        headers=optional(mapping(TEXT, ANYTHING, "a dict of header names to values")),
        started=FLAG,
        timeout=SECONDS,
    )
    def __init__(
        self,
        url: str | Renderable,
        *,
        headers: dict[str, str | Renderable] | None = None,
        body: Any = None,
        started: bool = True,
        timeout: float = 30.0,
        name: str | None = None,
        builders: Iterable[str] | None = None,
        mode: str | Iterable[str] = "all",
        **retry: Any,
    ):
        super().__init__(name or f"HttpStatusPush({_shown(url)})", builders=builders, mode=mode, **retry)
        self.url = self.credential("url", url)
        self.headers = {key: self.credential(f"header {key}", value) for key, value in (headers or {}).items()}
        self.body = body
        self.started = started
        self.timeout = timeout
        for text in _strings(body):
            problem = _template_problem(text)
            if problem:
                raise ConfigError(f"HttpStatusPush body: {problem}", *self._where())

    @property
    def reports_starts(self) -> bool:
        return self.started and super().reports_starts

    async def build_started(self, build: Build) -> None:
        await self._post("started", build)

    async def build_finished(self, build: Build) -> None:
        await self._post("finished", build)

    def payload(self, event: str, build: Build) -> Any:
        """What is posted for ``event`` (started, finished) of ``build``."""
        if self.body is None:
            return {"event": event, "build": build_report_json(build)}
        return _fill(self.body, _fields(event, build))

    async def _post(self, event: str, build: Build) -> None:
        url, headers = self.render(self.url), self.render(self.headers)
        await send_json(url, self.payload(event, build), headers=headers, timeout=self.timeout, shown=_shown(self.url))


def _shown(url: str | Renderable) -> str:
    """The URL as logs and errors may show it."""
    return url if isinstance(url, str) else "the secret URL"


class _Blank(dict):
    """Properties for a template: a name a build does not have is empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _fields(event: str, build: Build) -> dict[str, Any]:
    def name(result: Any) -> str:
        return result.name if result is not None else ""

    values = {
        "event": event,
        "id": build.id,
        "builder": build.builder,
        "number": build.number,
        "worker": build.worker,
        "result": name(build.result) or "RUNNING",
        "previous_result": name(build.previous_result),
        "branch": build.branch or "",
        "revision": build.revision or "",
        "reason": build.reason,
        "url": build.url or "",
        "duration": took(build.duration),
        "headline": headline(build),
        "properties": _Blank(build.properties),
    }
    return values


def _fill(template: Any, fields: dict[str, Any]) -> Any:
    if isinstance(template, str):
        return template.format_map(fields)
    if isinstance(template, dict):
        return {key: _fill(value, fields) for key, value in template.items()}
    if isinstance(template, (list, tuple)):
        return [_fill(value, fields) for value in template]
    return template


def _strings(template: Any) -> Iterator[str]:
    if isinstance(template, str):
        yield template
    elif isinstance(template, dict):
        for value in template.values():
            yield from _strings(value)
    elif isinstance(template, (list, tuple)):
        for value in template:
            yield from _strings(value)


def _template_problem(text: str) -> str | None:
    """What is wrong with a template string, or None."""
    try:
        names = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as exc:
        return f"{text!r}: {exc} (write a brace as {{{{ or }}}})"
    for field in names:
        base = re.match(r"[^.\[]*", field).group()
        if base not in FIELDS or "." in field:
            return f"{text!r} names {{{field}}}, which builds do not have; use {', '.join(sorted(FIELDS))}"
    return None
