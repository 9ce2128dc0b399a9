"""The capabilities a running master gives its chat bots (:class:`~flowbot.reporters.controls.Controls`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from ..records import Build
from ..reporters.controls import BuilderState
from ..results import Result
from ..web.api_artifacts import download_path

if TYPE_CHECKING:
    from .master import Master


class MasterControls:
    """Reads how the builders stand and forces builds, for the bots of one master."""

    def __init__(self, master: Master):
        self._master = master

    async def states(self) -> list[BuilderState]:
        master = self._master
        latest = await master.store.builds.latest(builder.name for builder in master.pipeline.builders)
        return [
            BuilderState(
                name=builder.name,
                running=master.dispatcher.running_count(builder.name),
                pending=master.queue.waiting(builder.name, 0)[0],
                last=build_record(master, latest[builder.name]) if builder.name in latest else None,
            )
            for builder in master.pipeline.builders
        ]

    async def last_build(self, builder: str) -> Build | None:
        master = self._master
        if master.pipeline.builder(builder) is None:
            raise NotFound(f"no builder named {builder!r}")
        running = master.dispatcher.running_count(builder)
        builds = await master.store.builds.query(builder=builder, limit=running + 1)
        return next((build_record(master, b) for b in builds if b["finished_at"] is not None), None)

    async def force(self, builder: str, *, reason: str, owner: str) -> list[int]:
        return await self._master.force(builder, reason=reason, owner=owner)


def build_record(master: Master, row: dict[str, Any], **more: Any) -> Build:
    """A build as the store lists it (:meth:`~flowbot.store.Store.builds`), as reporters take it."""
    return Build(
        id=row["id"],
        builder=row["builder"],
        number=row["number"],
        worker=row["worker"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=Result[row["result"]] if row["result"] else None,
        branch=row["branch"],
        revision=row["revision"],
        url=build_url(master, row["id"]),
        **more,
    )


def build_url(master: Master, build_id: int) -> str | None:
    """The page of a build, when the master serves one (at ``Pipeline(url=)`` or its own address)."""
    base = master.pipeline.url or master.http_url
    return f"{base.rstrip('/')}/#/builds/{build_id}" if base else None


def artifact_url(master: Master, build_id: int, path: str) -> str | None:
    """Where a file the build stored is downloaded, when the master serves a page."""
    base = master.pipeline.url or master.http_url
    return f"{base.rstrip('/')}{download_path(build_id, path)}" if base else None
