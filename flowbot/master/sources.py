"""Running the pipeline's change sources: each gets a context to submit changes and keep state,
and to withdraw or repeat the work of pull requests (what a webhook needs of the master)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InvalidRequest
from ..pull_requests import PullRequest
from ..records import BuildRequest, Change
from ..sources.base import ChangeSource

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..store import Store
    from .build import RunningBuild

log = logging.getLogger(__name__)


class SourceServices(Protocol):
    """What the master offers its change sources' contexts."""

    #: The master's directory (None for one embedded without a directory).
    basedir: Path | None

    @property
    def pipeline(self) -> Pipeline: ...

    @property
    def store(self) -> Store: ...

    @property
    def queue(self) -> Iterable[BuildRequest]:
        """The requests waiting to be built."""
        ...

    @property
    def running(self) -> Mapping[int, RunningBuild]:
        """The builds running, by request id."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]: ...

    async def add_change(
        self, change: Change, *, owner: str = "", state: dict[str, Any] | None = None
    ) -> tuple[int, list[int]]: ...

    async def cancel_request(self, request_id: int) -> None: ...

    async def rebuild(self, build_id: int, *, reason: str = "", owner: str = "") -> list[int]: ...


class _Context:
    """What one source sees of the master (see :class:`flowbot.sources.base.SourceContext`)."""

    def __init__(self, master: SourceServices, source: ChangeSource):
        self.master = master
        self.owner = f"source:{source.name}"
        self.basedir = master.basedir

    async def add_change(self, change: Change, state: dict[str, Any] | None = None) -> int:
        change_id, _ = await self.master.add_change(change, owner=self.owner, state=state)
        return change_id

    async def get_state(self) -> dict[str, Any]:
        return await self.master.store.state.get(self.owner)

    async def set_state(self, values: dict[str, Any]) -> None:
        await self.master.store.state.set(self.owner, values)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self.master.spawn(coro, name)

    async def cancel_pull_request(self, repository: str, number: int, reason: str) -> tuple[int, int]:
        def of_it(request: BuildRequest) -> bool:
            found = PullRequest.of(repository, {name: value for name, (value, _) in request.properties.items()})
            return (
                found is not None
                and found.number == number
                and any(s.repository == repository for s in request.sourcestamps)
            )

        master = self.master
        await master.store.pull_requests.close(repository, number, time.time())
        pending = [r for r in master.queue if of_it(r)]
        await asyncio.gather(*(master.cancel_request(r.id) for r in pending))
        running = [b for b in master.running.values() if of_it(b.request)]
        for build in running:
            build.stop(reason)
        if pending or running:
            log.info("%s: %d request(s) cancelled, %d build(s) stopped", reason, len(pending), len(running))
        return len(pending), len(running)

    async def rebuild(self, build_id: int, reason: str, *, revision: str | None = None) -> list[int]:
        if revision is not None:
            _, spec = await self.master.store.builds.buildset_of(build_id)
            if revision not in {s.revision for s in spec.sourcestamps}:
                raise InvalidRequest(f"build {build_id} did not build {revision}")
        return await self.master.rebuild(build_id, reason=reason, owner=self.owner)


class Sources:
    """Starts and stops the pipeline's change sources.

    Args:
        master: what their contexts offer them (see :class:`SourceServices`).
    """

    def __init__(self, master: SourceServices):
        self.master = master
        self.running: list[ChangeSource] = []

    def by_name(self, name: str) -> ChangeSource | None:
        return next((s for s in self.running if s.name == name), None)

    async def start(self) -> None:
        for source in self.master.pipeline.sources:
            try:
                await source.start(_Context(self.master, source))
            except Exception:
                log.exception("change source %s failed to start; the others run", source.name)
                continue
            self.running.append(source)

    async def stop(self) -> None:
        for source in self.running:
            try:
                await source.stop()
            except Exception:
                log.exception("change source %s failed to stop", source.name)
        self.running = []
