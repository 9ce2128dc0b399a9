"""The capabilities a running master gives its chat bots (:class:`~flowbot.reporters.controls.Controls`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from ..errors import NotFound
from ..records import Build
from ..reporters.controls import BuilderState

if TYPE_CHECKING:
    from .status import Status


class BuildQuery(Protocol):
    """The store's list of builds (``store.builds``)."""

    async def query(self, *, builder: str | None = None, limit: int = 50) -> list[Build]: ...


class MasterControls:
    """Reads how the builders stand and forces builds, for the bots of one master.

    Args:
        status: the master's read facade.
        builds: the store's list of builds.
        page: where the master's page is served, if it is.
        force: forces a build of a builder.
    """

    def __init__(
        self,
        *,
        status: Status,
        builds: Callable[[], BuildQuery],
        page: Callable[[], str | None],
        force: Callable[..., Awaitable[list[int]]],
    ):
        self._status = status
        self._builds = builds
        self._page = page
        self._force = force

    async def states(self) -> list[BuilderState]:
        page = self._page()
        return [
            BuilderState(
                name=state.name,
                running=state.running,
                pending=state.pending,
                last=build_record(state.last_build, page) if state.last_build is not None else None,
            )
            for state in await self._status.builders()
        ]

    async def last_build(self, builder: str) -> Build | None:
        found = self._status.load().get(builder)
        if found is None:
            raise NotFound(f"no builder named {builder!r}")
        _, running = found
        builds = await self._builds().query(builder=builder, limit=running + 1)
        return next((build_record(b, self._page()) for b in builds if b.finished_at is not None), None)

    async def force(self, builder: str, *, reason: str, owner: str) -> list[int]:
        return await self._force(builder, reason=reason, owner=owner)


def build_record(build: Build, page: str | None, **more: Any) -> Build:
    """A build as the store reads it, as reporters take it: linked to its page on the master's
    page at ``page`` (see :func:`build_url`), with ``more`` of its details."""
    return dataclasses.replace(build, url=build_url(page, build.id), **more)


def build_url(page: str | None, build_id: int) -> str | None:
    """The page of a build, when the master serves a page (at ``page``: ``Pipeline(url=)`` or its own address)."""
    return f"{page.rstrip('/')}/#/builds/{build_id}" if page else None


def download_path(build_id: int, path: str) -> str:
    """Where the file ``path`` of build ``build_id`` is downloaded, on the master."""
    return f"/api/builds/{build_id}/artifacts/{quote(path)}"


def artifact_url(page: str | None, build_id: int, path: str) -> str | None:
    """Where a file the build stored is downloaded, when the master serves a page (at ``page``)."""
    return f"{page.rstrip('/')}{download_path(build_id, path)}" if page else None
