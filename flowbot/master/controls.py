"""The capabilities a running master gives its chat bots (:class:`~flowbot.reporters.controls.Controls`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from ..errors import NotFound
from ..records import Build
from ..reporters.controls import BuilderState

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..store import Store
    from .queue import BuildQueue


class RunningCounts(Protocol):
    """How many builds each builder runs (the dispatcher's count)."""

    def running_count(self, builder: str) -> int: ...


class ControlledMaster(Protocol):
    """What the bots' controls use of the master."""

    @property
    def pipeline(self) -> Pipeline: ...

    @property
    def store(self) -> Store: ...

    @property
    def queue(self) -> BuildQueue: ...

    @property
    def dispatcher(self) -> RunningCounts: ...

    @property
    def page_url(self) -> str | None:
        """Where the master's page is served, if it is."""
        ...

    async def force(self, builder: str, *, reason: str = "", owner: str = "") -> list[int]: ...


class MasterControls:
    """Reads how the builders stand and forces builds, for the bots of one master."""

    def __init__(self, master: ControlledMaster):
        self._master = master

    async def states(self) -> list[BuilderState]:
        master = self._master
        latest = await master.store.builds.latest(builder.name for builder in master.pipeline.builders)
        return [
            BuilderState(
                name=builder.name,
                running=master.dispatcher.running_count(builder.name),
                pending=master.queue.waiting(builder.name, 0)[0],
                last=build_record(latest[builder.name], master.page_url) if builder.name in latest else None,
            )
            for builder in master.pipeline.builders
        ]

    async def last_build(self, builder: str) -> Build | None:
        master = self._master
        if master.pipeline.builder(builder) is None:
            raise NotFound(f"no builder named {builder!r}")
        running = master.dispatcher.running_count(builder)
        builds = await master.store.builds.query(builder=builder, limit=running + 1)
        return next((build_record(b, master.page_url) for b in builds if b.finished_at is not None), None)

    async def force(self, builder: str, *, reason: str, owner: str) -> list[int]:
        return await self._master.force(builder, reason=reason, owner=owner)


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
