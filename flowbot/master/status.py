"""One read facade over the master's state, for every face: the workers, the builders, the running builds.

The HTTP API, the notebook panel, the metrics and the chat bots ask here rather than each reading
the registry, the worker controls, the queue, the dispatcher and the store in its own way. Answers
are frozen records (:class:`~flowbot.records.WorkerState`, :class:`BuilderStatus`, :class:`Activity`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

__all__ = ["Activity", "BuilderStatus", "RunningRef", "Status", "WorkerState"]

from ..records import Build, BuildRequest, RememberedWorker, RunningRef, WorkerState
from .events import Event, EventBus, EventKind

if TYPE_CHECKING:
    from ..builder import Builder
    from ..pipeline import Pipeline
    from .build import RunningBuild


@dataclass(frozen=True, slots=True)
class BuilderStatus:
    """A builder of the pipeline (its configuration) and how it stands now."""

    builder: Builder
    #: Requests waiting for a worker, and the first of them in the order they would run (as many as asked for).
    pending: int
    first_pending: tuple[BuildRequest, ...]
    #: Builds running now.
    running: int
    #: Why dispatching holds it aside (a problem of its configuration), or None.
    held: str | None
    #: Its newest build (running or finished), if it has one.
    last_build: Build | None
    #: Its newest builds, newest first (as many as asked for).
    recent: tuple[Build, ...]

    @property
    def name(self) -> str:
        return self.builder.name


@dataclass(frozen=True, slots=True)
class Activity:
    """How busy the master is: builds running, requests waiting, and the first of those."""

    running: int
    queued: int
    #: The oldest requests waiting (as many as asked for), whatever their builder.
    first_queued: tuple[BuildRequest, ...]


class Waiting(Protocol):
    """The queue of pending requests."""

    def waiting(self, builder: str, first: int) -> tuple[int, list[BuildRequest]]: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[BuildRequest]:
        """Every pending request, oldest first."""
        ...


class BuildReads(Protocol):
    """The store's reads of builds (``store.builds``)."""

    async def latest(self, builders: Iterable[str]) -> dict[str, Build]: ...

    async def recent(self, builders: Iterable[str], per_builder: int) -> dict[str, list[Build]]: ...


class Connection(Protocol):
    connected_at: float
    last_seen: float
    info: dict[str, Any]


class Controls(Protocol):
    def state(self, name: str) -> dict[str, Any]:
        """Whether ``name`` is paused (``paused``, ``paused_reason``) or ``shutting_down``."""
        ...


class Remembered(Protocol):
    """What the store remembers of each worker (``store.workers``)."""

    async def all(self) -> dict[str, RememberedWorker]: ...


class Status:
    """What the master is doing, read for people.

    Args:
        pipeline: the pipeline now (it changes with a reconfigure).
        connections: the workers connected now, by name.
        running: the builds running now, by request id.
        builds_on: the builds running on a connection.
        controls: pauses and shutdowns.
        held_workers: workers dispatching holds aside, with why.
        queue: the pending requests.
        why_waiting: why a builder's pending requests (of a matrix cell) have not started.
        running_count: how many builds of a builder run now.
        held_builders: builders dispatching holds aside, with why.
        remembered: the store's memory of workers, for those not connected.
        builds: the store's reads of builds.
        events: the master's events, to index running builds by id as they start.
    """

    def __init__(
        self,
        *,
        pipeline: Callable[[], Pipeline],
        connections: Mapping[str, Connection],
        running: Mapping[int, RunningBuild],
        builds_on: Callable[[Any], Iterable[RunningBuild]],
        controls: Controls,
        held_workers: Mapping[str, str],
        queue: Waiting,
        why_waiting: Callable[[str, dict[str, Any] | None], str],
        running_count: Callable[[str], int],
        held_builders: Mapping[str, str],
        remembered: Callable[[], Remembered],
        builds: Callable[[], BuildReads],
        events: EventBus,
    ):
        self._pipeline = pipeline
        self._connections = connections
        self._running = running
        self._builds_on = builds_on
        self._controls = controls
        self._held_workers = held_workers
        self._queue = queue
        self._why_waiting = why_waiting
        self._running_count = running_count
        self._held_builders = held_builders
        self._remembered = remembered
        self._builds = builds
        self._request_of: dict[int, int] = {}  # running build id -> its request's id
        events.subscribe(self._index, [EventKind.BUILD_STARTED.value, EventKind.BUILD_FINISHED.value])

    def _index(self, event: Event) -> None:
        build = event["build"]
        if event["type"] == EventKind.BUILD_STARTED:
            self._request_of[build["id"]] = build["request_id"]
        else:
            self._request_of.pop(build["id"], None)

    def running_build(self, build_id: int) -> RunningBuild | None:
        """The build with id ``build_id``, if it runs now."""
        request_id = self._request_of.get(build_id)
        build = self._running.get(request_id) if request_id is not None else None
        return build if build is not None and build.id == build_id else None

    async def workers(self) -> list[WorkerState]:
        """Every worker the pipeline declares, in its order."""
        remembered = await self._remembered().all()
        states = []
        for spec in self._pipeline().workers:
            connection = self._connections.get(spec.name)
            known = remembered.get(spec.name, RememberedWorker())
            running = self._builds_on(connection) if connection is not None else ()
            states.append(
                WorkerState(
                    name=spec.name,
                    launcher=spec.launcher.kind if spec.launcher is not None else None,
                    connected=connection is not None,
                    connected_at=connection.connected_at if connection else known.connected_at,
                    last_seen=connection.last_seen if connection else known.last_seen,
                    info=connection.info if connection else known.info,
                    running=tuple(RunningRef(b.id, b.builder, b.number) for b in running),
                    **self._controls.state(spec.name),
                    held=self._held_workers.get(spec.name),
                )
            )
        return states

    def why_waiting(self, request: BuildRequest) -> str | None:
        """Why ``request`` has not started, or None once a master claimed it (or it completed)."""
        if request.complete_at is not None or request.claimed_at is not None:
            return None
        return self._why_waiting(request.builder, request.cell)

    def activity(self, shown: int = 0) -> Activity:
        """How many builds run and requests wait now, with the ``shown`` oldest of those, read from memory."""
        return Activity(len(self._running), len(self._queue), tuple(itertools.islice(self._queue, shown)))

    def load(self) -> dict[str, tuple[int, int]]:
        """``{builder: (pending, running)}`` for every builder of the pipeline, read from memory."""
        return {
            builder.name: (self._queue.waiting(builder.name, 0)[0], self._running_count(builder.name))
            for builder in self._pipeline().builders
        }

    async def builders(
        self, names: Iterable[str] | None = None, *, shown: int = 0, recent: int = 0
    ) -> list[BuilderStatus]:
        """The builders of the pipeline (those of ``names`` only, when given), in its order, each
        with its ``shown`` first pending requests and its ``recent`` newest builds.

        What is in memory is read before the store is, so a build that starts meanwhile is seen
        running, or in the store, but never in neither.
        """
        wanted = None if names is None else set(names)
        live = []
        for builder in self._pipeline().builders:
            if wanted is not None and builder.name not in wanted:
                continue
            pending, first = self._queue.waiting(builder.name, shown)
            live.append((builder, pending, tuple(first), self._running_count(builder.name)))
        found = [builder.name for builder, *_ in live]
        reads = self._builds()
        if recent:  # the newest of its recent builds is its latest: one read answers both
            newest = await reads.recent(found, recent)
            latest = {name: builds[0] for name, builds in newest.items()}
        else:
            newest, latest = {}, await reads.latest(found)
        return [
            BuilderStatus(
                builder=builder,
                pending=pending,
                first_pending=first,
                running=running,
                held=self._held_builders.get(builder.name),
                last_build=latest.get(builder.name),
                recent=tuple(newest.get(builder.name, ())),
            )
            for builder, pending, first, running in live
        ]
