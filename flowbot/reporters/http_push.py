"""``HttpStatusPush``: POST every build's start and end as JSON to a URL of your choice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..properties import Renderable
from ..records import Build
from .base import Reporter
from .transport import send_json


class HttpStatusPush(Reporter):
    """POST ``{"event": "started" | "finished", "build": {...}}`` to ``url``.

    The build is :meth:`Build.to_dict`. A failed POST is retried with back-off (see
    :class:`~flowbot.reporters.Reporter`); an endpoint that answers 4xx is not retried.

    Args:
        url: where to POST; a secret, ``Interpolate("%(secret:hook_url)s")``, for URLs that carry
            a token (chat webhooks do): then the URL is never logged, errors say "the secret URL".
        headers: extra headers, e.g. ``{"Authorization": Interpolate("Bearer %(secret:hook_token)s")}``
            (values may refer to the pipeline's secrets; never logged).
        started: also report builds as they start (in mode ``"all"`` only, where each start is
            followed by its end).
        timeout: seconds per POST.
        name, builders, mode, attempts, backoff: as for :class:`~flowbot.reporters.Reporter`.
    """

    def __init__(
        self,
        url: str | Renderable,
        *,
        headers: dict[str, str | Renderable] | None = None,
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
        self.started = started
        self.timeout = timeout

    @property
    def reports_starts(self) -> bool:
        return self.started and super().reports_starts

    async def build_started(self, build: Build) -> None:
        await self._post({"event": "started", "build": build.to_dict()})

    async def build_finished(self, build: Build) -> None:
        await self._post({"event": "finished", "build": build.to_dict()})

    async def _post(self, payload: dict[str, Any]) -> None:
        url, headers = self.render(self.url), self.render(self.headers)
        await send_json(url, payload, headers=headers, timeout=self.timeout, shown=_shown(self.url))


def _shown(url: str | Renderable) -> str:
    """The URL as logs and errors may show it."""
    return url if isinstance(url, str) else "the secret URL"
