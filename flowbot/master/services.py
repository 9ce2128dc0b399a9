"""What a running build uses of the master, and how builds are made.

A :class:`~flowbot.master.build.RunningBuild` is handed :class:`BuildServices`, not the master: the
store it records into, the events it announces, the lock table, the tasks it starts, and the few
acts that reach other builds (trigger, stop the builds it triggered, queue what follows it). The
master provides them; a test provides a small fake and runs a build with no master at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from ..analysis import History
    from ..builder import Builder
    from ..pipeline import Pipeline
    from ..records import BuildRequest, BuildsetSpec, SourceStamp
    from ..results import Result
    from ..store import Store
    from .approvals import Approvals
    from .build import RunningBuild
    from .events import EventBus
    from .locks import LockTable
    from .registry import WorkerConnection

T = TypeVar("T")


class BuildServices(Protocol):
    """What the master offers the builds it runs."""

    #: The master's name, recorded with each build it starts.
    name: str
    #: The master's directory (None for one embedded without a directory).
    basedir: Path | None
    #: The database URL (a transfer may not touch the database's files).
    db_url: str
    #: Where builds' events are announced.
    events: EventBus

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline running now (it may change while a build runs)."""
        ...

    @property
    def store(self) -> Store:
        """Where a build's records are written."""
        ...

    @property
    def locks(self) -> LockTable:
        """The locks steps take."""
        ...

    @property
    def artifacts_dir(self) -> Path:
        """Where uploaded files are kept on the master."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, T], name: str, *, watched: bool = False) -> asyncio.Task[T]:
        """Run ``coro`` as a task the master owns (see :meth:`flowbot.master.tasks.Tasks.spawn`)."""
        ...

    def schedule(self) -> None:
        """Look again for builds that can start (a build released locks they may wait for)."""
        ...

    async def trigger(
        self,
        build: RunningBuild,
        schedulers: list[str],
        sourcestamps: tuple[SourceStamp, ...],
        properties: dict[str, tuple[Any, str]],
        *,
        wait: bool,
    ) -> list[Result]:
        """Start a buildset on each Triggerable scheduler for ``build``; with ``wait``, their results."""
        ...

    def stop_children(self, build_id: int, reason: str, result: Result) -> None:
        """Stop the builds build ``build_id`` triggered; they end as ``result``."""
        ...

    def downstream(self, build: RunningBuild, result: Result) -> list[BuildsetSpec]:
        """The buildsets that follow ``build`` ending as ``result`` (Dependent schedulers)."""
        ...

    def enqueue(self, requests: list[BuildRequest]) -> None:
        """Queue stored requests for building."""
        ...

    def release_worker(self, build: RunningBuild) -> None:
        """Let ``build`` go on without its worker, which other builds may take meanwhile."""
        ...

    async def worker_for(self, build: RunningBuild) -> None:
        """Give ``build`` a worker of its builder again, once one is free (it calls
        :meth:`RunningBuild.moved_to`)."""
        ...

    @property
    def approvals(self) -> Approvals:
        """The builds that wait for a person's decision."""
        ...

    @property
    def history(self) -> History:
        """The build history (which tests are flaky)."""
        ...


class BuildFactory(Protocol):
    """Makes the build of ``request`` on ``connection`` (how the dispatcher and the adoption of
    builds after a restart get their builds, without knowing what the build needs)."""

    def __call__(
        self, builder: Builder, request: BuildRequest, connection: WorkerConnection, number: int
    ) -> RunningBuild: ...
