"""Dispatch: from the queue of pending requests to running builds on free workers.

It decides which request runs next and where: across builders, the builder whose first request in
line has the highest priority, then is the oldest, goes first (so a worker shared by builders takes
the most urgent request of all); within a builder, its ``next_build`` hook picks the request and its
``next_worker`` hook the worker when it has them (else highest priority, then oldest, on the least
busy free worker). A worker's ``max_builds``, one build per builder per worker, and the builder's
locks, which are taken at once or not at all so a build never holds a worker while it waits, say
what can start. A new request for the same source collapses older waiting ones into it (Buildbot's
rule, per builder). It also tells whoever waits for a buildset (a ``Trigger`` step) when all its
requests are done.

No build starts while the store cannot take writes (its database down, its disk full): a build
would run without a record of it. When the store is back, the queue goes on, with any request the
store holds as pending that this master does not (one whose acceptance was stored although its
sender heard of a failure, say).

A builder or a worker that makes dispatching fail unexpectedly (a hook or a value the pipeline's
checks did not catch) is held aside: the error is logged once, the API shows why, its requests wait
in the queue, and every other builder and worker goes on building. A new pipeline lets it try again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..builder import Builder
from ..defaults import DISPATCH_BATCH, DISPATCH_SLICE
from ..errors import NotFound, StoreError
from ..matrix import fits, label
from ..pipeline import Pipeline
from ..records import BuildRequest
from ..results import Result, worst
from ..superseding import Superseding
from .events import EventKind
from .free_workers import FreeWorkers
from .locks import LockTable
from .matrices import fail_fast
from .policy import AssignmentPass, collapsed, pick_in_order, takes_build
from .queue import BuildQueue
from .registry import WorkerConnection
from .tasks import Spawn
from .waiting import WorkerFacts, why_waiting

if TYPE_CHECKING:
    from .build import RunningBuild
    from .services import BuildFactory

log = logging.getLogger(__name__)


class Requests(Protocol):
    """The store's requests (:class:`~flowbot.store.requests.Requests`)."""

    async def cancel(self, request_id: int, now: float, result: Result = Result.CANCELLED) -> None: ...

    async def pending(self, *, unclaimed: bool = False) -> list[BuildRequest]: ...


class RequestStore(Protocol):
    """The store, as far as the queue goes."""

    requests: Requests

    @property
    def available(self) -> bool:
        """Whether the store takes writes now (builds start only then)."""
        ...


class Connections(Protocol):
    """The workers connected now (the worker registry)."""

    connections: Mapping[str, WorkerConnection]


class Controls(Protocol):
    """Paused workers and those leaving (:class:`~flowbot.master.worker_control.WorkerControl`)."""

    def takes_builds(self, connection: WorkerConnection) -> bool: ...

    def state(self, name: str) -> dict[str, Any]: ...

    def build_ended(self, connection: WorkerConnection) -> None: ...


class Instances(Protocol):
    """Workers started on demand (:class:`~flowbot.master.latent.LatentWorkers`)."""

    pools: Mapping[str, Any]

    def expand(self, names: Sequence[str]) -> Sequence[str]: ...

    def balance(self, waiting: Iterable[Sequence[str]]) -> None: ...

    def build_started(self, name: str) -> None: ...

    def build_ended(self, name: str) -> None: ...


class Events(Protocol):
    def emit(self, kind: EventKind, **data: Any) -> None: ...


@dataclass(eq=False)
class _Watch:
    """Someone waiting for every request of a buildset to complete."""

    pending: set[int]
    results: list[Result] = field(default_factory=list)
    done: asyncio.Future[Result] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Dispatcher:
    """The queue, the running builds, and the choice of what runs where.

    Args:
        pipeline: the pipeline running now.
        store: the store (once open).
        workers: the connected workers.
        controls: which workers take no new builds.
        instances: workers started on demand.
        new_build: makes a build (it runs when the dispatcher says).
        busy: whether builds from before a restart are still being taken up.
    """

    def __init__(
        self,
        *,
        pipeline: Callable[[], Pipeline],
        store: Callable[[], RequestStore],
        workers: Connections,
        controls: Controls,
        instances: Instances,
        events: Events,
        spawn: Spawn,
        new_build: BuildFactory,
        busy: Callable[[], bool],
    ):
        self._pipeline = pipeline
        self._store = store
        self._workers = workers
        self._controls = controls
        self._instances = instances
        self._events = events
        self._spawn = spawn
        self._new_build = new_build
        self._busy = busy
        self.queue = BuildQueue()
        self.locks = LockTable()
        self.running: dict[int, RunningBuild] = {}  # by request id
        self._on: dict[WorkerConnection, dict[int, RunningBuild]] = {}  # running builds by connection, by request id
        self._of: Counter[str] = Counter()  # running builds by builder
        self._free = FreeWorkers(self._load)
        self.numbers: dict[str, int] = {}
        self._recording: set[int] = set()  # requests whose builds' records are on their way
        self._ended_while_reading: set[int] | None = None  # requests ended during requeue_pending's read
        self._scheduled = False
        self._pass: AssignmentPass | None = None  # the pass under way, over several turns of the loop
        self._changed = False  # whether a pass was asked for since the one under way began
        self._pass_waiters: list[asyncio.Future[None]] = []  # one each: a waiter cancelled leaves the others be
        self._watches: dict[int, _Watch] = {}
        self._attempts: dict[int, int] = {}  # builds each request had, while it runs again
        self._delayed: dict[int, asyncio.TimerHandle] = {}  # requests waiting for their builder's retry delay
        self._rejoining: list[tuple[RunningBuild, asyncio.Future[None]]] = []  # builds waiting for a worker again
        self.idle = asyncio.Event()
        self.active = False
        #: Builders, and workers, held aside after an unexpected error in dispatching them: why, by name.
        self.held_builders: dict[str, str] = {}
        self.held_workers: dict[str, str] = {}

    # -- requests in ------------------------------------------------------------------------------

    def enqueue(self, requests: list[BuildRequest]) -> None:
        """Queue new requests (already stored); older ones they collapse end as SKIPPED, and the
        work they supersede ends as CANCELLED."""
        superseding = Superseding(self._pipeline().builders) if requests else None
        for request in requests:
            self._supersede(request, superseding)
            self._collapse_into(request)
            self.queue.add(request)
            self._events.emit(
                EventKind.REQUEST_NEW,
                request_id=request.id,
                builder=request.builder,
                branch=request.branch,
                revision=request.revision,
            )
        self.update_idle()
        self.schedule()

    def _supersede(self, new: BuildRequest, superseding: Superseding) -> None:
        """Let go of the waiting requests ``new`` superseded (the store completed them with it), and
        stop the running builds it supersedes."""
        for request_id in new.superseded:
            old = self.queue.get(request_id)
            if old is not None:
                log.info("request %d (%s) superseded by request %d", old.id, old.builder, new.id)
                self.queue.remove(request_id)
                self._completed(old, Result.CANCELLED)
        reason = superseding.reason(new)
        if reason is None:
            return
        for build in list(self.running.values()):
            if superseding.supersedes(new, build.request):
                build.stop(reason)

    def _collapse_into(self, new: BuildRequest) -> None:
        for old in collapsed(self._pipeline().builder(new.builder), new, self.queue):
            log.info("request %d (%s) collapsed into request %d", old.id, old.builder, new.id)
            self.cancel(old, Result.SKIPPED)

    def cancel(
        self, request: BuildRequest, result: Result = Result.CANCELLED, *, awaited: bool = False
    ) -> asyncio.Task[None]:
        """Take a waiting request out of the queue now; it completes as ``result`` in the store.

        The completion is a task the master owns: it is logged if it fails, unless the caller
        says it is ``awaited`` (the caller then gets the failure).
        """
        self.queue.remove(request.id)
        self.schedule()  # an instance starting for it is no longer needed
        completing = self._complete_unbuilt(request, result)
        return self._spawn(completing, f"completing request {request.id}", watched=awaited)

    async def _complete_unbuilt(self, request: BuildRequest, result: Result) -> None:
        try:
            await self._store().requests.cancel(request.id, time.time(), result)
        except StoreError:
            if self.active:  # still pending in the store: it waits in line again
                self.queue.add(request)
                self.schedule()
            self.update_idle()
            raise
        self._completed(request, result)

    def _completed(self, request: BuildRequest, result: Result) -> None:
        """A request out of the queue is complete in the store, without a build."""
        self._ended(request)
        self.request_done(request, result)
        self.update_idle()
        self._events.emit(
            EventKind.REQUEST_CANCELLED, request_id=request.id, builder=request.builder, result=result.name
        )

    async def requeue_pending(self) -> None:
        """Queue the requests the store holds as pending and unclaimed that this master neither
        queues nor builds (run when the store is back after an outage)."""
        self._ended_while_reading = ended = set()
        try:
            pending = await self._store().requests.pending(unclaimed=True)
        finally:
            self._ended_while_reading = None
        missing = [
            r
            for r in pending
            if r.id not in self.queue
            and r.id not in self.running
            and r.id not in self._recording
            and r.id not in self._delayed
            and r.id not in ended
        ]
        if missing:
            log.warning("%d pending request(s) of the store were not queued; queueing them", len(missing))
            self.enqueue(missing)

    def _ended(self, request: BuildRequest) -> None:
        if self._ended_while_reading is not None:
            self._ended_while_reading.add(request.id)

    # -- watching buildsets ----------------------------------------------------------------------

    def watch(self, buildset_id: int, request_ids: set[int]) -> asyncio.Future[Result]:
        """A future of the buildset's result once all of ``request_ids`` are complete."""
        watch = _Watch(set(request_ids))
        self._watches[buildset_id] = watch
        return watch.done

    def request_done(self, request: BuildRequest, result: Result) -> None:
        watch = self._watches.get(request.buildset_id)
        if watch is None or request.id not in watch.pending:
            return
        watch.pending.discard(request.id)
        watch.results.append(result)
        if not watch.pending:
            del self._watches[request.buildset_id]
            if not watch.done.done():
                watch.done.set_result(worst(*watch.results))

    # -- assignment -------------------------------------------------------------------------------

    def schedule(self) -> None:
        """Run an assignment pass soon (once, however often it is asked for in one turn; once more
        after the pass under way, if one is)."""
        if self.active:
            self._changed = True
            self._soon()

    def _soon(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._assign)

    async def assigned(self) -> None:
        """Wait for the assignment pass that is due, if one is; the builds it starts have sent
        their first command to their workers by the time this returns."""
        if self._scheduled:
            waiter = asyncio.get_running_loop().create_future()
            self._pass_waiters.append(waiter)
            await waiter

    def release_held(self) -> None:
        """Let held builders and workers try again (the pipeline changed)."""
        self.held_builders.clear()
        self.held_workers.clear()
        self._free.clear()

    def worker_ready(self, name: str) -> None:
        """Worker ``name`` may take builds it could not (it connected, or was unpaused)."""
        self._free.touch(name)
        self.schedule()

    def _assign(self) -> None:
        """Run the assignment pass under way, or a new one, for a slice: a pass that would hold the
        loop longer than :data:`~flowbot.defaults.DISPATCH_SLICE`, or start more than
        :data:`~flowbot.defaults.DISPATCH_BATCH` builds, goes on in a later turn of the loop, after
        the work that waits (heartbeats, output, requests, the first turns of the builds started)."""
        self._scheduled = False
        more = False
        try:
            if not self.active or not self._store().available:
                self._pass = None
                return  # the store's return schedules a pass
            if self._rejoining:
                self._rejoin()
            if self._pass is None:
                self._changed = False
                if not self.queue:  # nothing waits: a pass would offer no builder anything
                    if self._instances.pools:
                        self._instances.balance(())
                    return
                self._pass = AssignmentPass(self.queue, self._start_or_hold)
            deadline, enough = time.monotonic() + DISPATCH_SLICE, len(self.running) + DISPATCH_BATCH
            more = self._pass.run(lambda: len(self.running) >= enough or time.monotonic() > deadline)
            if not more:
                self._pass = None
                # What changed during a pass of several slices may let builders it passed start.
                more = self._changed
            if not more and self._instances.pools:
                self._instances.balance(self._waiting_workers())
        finally:
            if more:
                self._soon()
            else:
                # Waiters resume after the builds just started have run up to their first command.
                waiters, self._pass_waiters = self._pass_waiters, []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    def _waiting_workers(self) -> Iterator[Sequence[str]]:
        """The workers of each request's builder, for each request that waits."""
        pipeline = self._pipeline()
        for request in self.queue:
            builder = pipeline.builder(request.builder)
            if builder is not None:
                yield builder.workers

    def _start_or_hold(self, name: str) -> bool:
        """:meth:`_start_one`, with a builder that makes it fail held aside (the pass goes on)."""
        if name in self.held_builders:
            return False
        try:
            return self._start_one(name)
        except Exception as exc:
            self._hold(self.held_builders, "builder", name, exc)
            return False

    def _start_one(self, name: str) -> bool:
        builder = self._pipeline().builder(name)
        if builder is None:
            return False  # requests for a builder the pipeline no longer has wait for it to return
        free = self._free_workers(builder)
        try:
            picked = pick_in_order(builder, free, self.queue, self.locks, self._fits if builder.matrix else None)
        finally:
            free.close()
        if picked is None:
            return False
        request, worker = picked
        connection = self._workers.connections[worker]
        number = self.numbers.get(builder.name, 1)
        attempt = self._attempts.get(request.id, 0) + 1
        try:
            build = self._new_build(builder, request, connection, number)
        except BaseException:
            self.locks.release(request.id)  # the request stays in line, holding nothing
            raise
        build.attempt = attempt
        self.queue.remove(request.id)
        self._attempts[request.id] = attempt
        self.numbers[builder.name] = number + 1
        self._running(build)
        return True

    def release_worker(self, build: RunningBuild) -> None:
        """Let ``build`` go on without its worker (it waits for an approval, or its worker is lost):
        the worker and the builder's locks it holds are free for other builds meanwhile."""
        connection = build.connection
        self.locks.release(build.request.id)
        if connection is None:
            return
        on = self._on.get(connection)
        if on is not None:
            on.pop(build.request.id, None)
            if not on:
                del self._on[connection]
        build.connection = None
        self._free.touch(connection.name)
        self._controls.build_ended(connection)
        self._instances.build_ended(connection.name)
        self.schedule()

    async def worker_for(self, build: RunningBuild) -> None:
        """Give ``build`` a worker of its builder again, with its builder's locks, once one is free
        (before any waiting request: the build has begun)."""
        taken = asyncio.get_running_loop().create_future()
        self._rejoining.append((build, taken))
        self.schedule()
        try:
            await taken
        finally:
            self._rejoining = [(b, f) for b, f in self._rejoining if f is not taken]

    def _rejoin(self) -> None:
        """Give the builds waiting for a worker again one each, where one is free."""
        for build, taken in self._rejoining:
            if taken.done():
                continue
            builder = build.builder_config
            free = self._free_workers(builder)
            try:
                worker = next((w for w in free if self.locks.try_acquire(builder.locks, w, build.request.id)), None)
            finally:
                free.close()
            if worker is None:
                continue
            connection = self._workers.connections[worker]
            build.moved_to(connection)
            self._on.setdefault(connection, {})[build.request.id] = build
            self._instances.build_started(worker)
            self._free.touch(worker)
            taken.set_result(None)

    def adopt(self, build: RunningBuild) -> None:
        """Run ``build``, taken up after a master restart (see :mod:`flowbot.master.adoption`); its
        builder's locks are held for it already."""
        self._running(build)
        self.update_idle()

    def _running(self, build: RunningBuild) -> None:
        """Count ``build`` as running on its worker, and run it."""
        self.running[build.request.id] = build
        self._on.setdefault(build.connection, {})[build.request.id] = build
        self._of[build.builder] += 1
        self._instances.build_started(build.worker)
        self._free.touch(build.worker)
        self._spawn(self._run(build), f"build {build.builder} #{build.number}")

    def _not_running(self, build: RunningBuild) -> None:
        request_id = build.request.id
        if self.running.pop(request_id, None) is not None:
            self._of[build.builder] -= 1
        on = self._on.get(build.connection)
        if on is not None:
            on.pop(request_id, None)
            if not on:
                del self._on[build.connection]
        self._free.touch(build.worker)

    def why_waiting(self, name: str, cell: dict[str, Any] | None = None) -> str:
        """Why the pending requests of builder ``name`` (its matrix ``cell``) have not started (see :mod:`.waiting`)."""
        pipeline = self._pipeline()
        builder = pipeline.builder(name)
        if builder is None:
            return why_waiting(name, False, [], True)
        takers = [w for w in builder.workers if not cell or fits(cell, getattr(pipeline.worker(w), "properties", {}))]
        if not takers:
            return f"no worker of {name} takes matrix cell {label(cell or {})}"
        facts = []
        for worker in takers:
            spec = pipeline.worker(worker)
            connection = self._workers.connections.get(worker)
            control = self._controls.state(worker)
            running = tuple(b.builder for b in self.builds_on(connection)) if connection is not None else ()
            facts.append(
                WorkerFacts(
                    worker,
                    connection is not None,
                    paused=(control["paused_reason"] or "") if control["paused"] else None,
                    shutting_down=control["shutting_down"],
                    running=running,
                    max_builds=spec.max_builds if spec is not None else None,
                    on_demand=spec is not None and spec.launcher is not None,
                )
            )
        free = [w for w in self._free_workers(builder) if not cell or self._fits_cell(cell, w)]
        locks_free = not free or any(self.locks.free(builder.locks, worker) for worker in free)
        return why_waiting(name, True, facts, locks_free)

    def builds_on(self, connection: WorkerConnection) -> list[RunningBuild]:
        """The builds running on ``connection``."""
        return list(self._on.get(connection, {}).values())

    def running_count(self, builder: str) -> int:
        """How many builds of ``builder`` run now."""
        return self._of[builder]

    def _load(self, worker: str) -> int:
        """How many builds the connected worker ``worker`` runs."""
        connection = self._workers.connections.get(worker)
        return len(self._on.get(connection, ())) if connection is not None else 0

    def _fits(self, request: BuildRequest, worker: str) -> bool:
        """Whether ``worker``'s properties agree with the cell ``request`` builds (any, if it is no cell)."""
        return self._fits_cell(request.cell or {}, worker)

    def _fits_cell(self, cell: dict[str, Any], worker: str) -> bool:
        return fits(cell, self._workers.connections[worker].spec.properties)

    def _free_workers(self, builder: Builder) -> Iterator[str]:
        """Connected workers of ``builder`` that take builds (not paused, not leaving), are not
        building it and are below their limit, least busy first."""
        names = self._instances.expand(builder.workers)
        if names is builder.workers:  # none starts on demand: the index knows them
            return self._free.least_busy(builder.name, names, lambda worker: self._takes(builder.name, worker))
        return (w for w in sorted([w for w in names if self._takes(builder.name, w)], key=self._load))

    def _takes(self, builder: str, worker: str) -> bool:
        """Whether ``worker`` takes a build of ``builder`` now; one that makes this fail is held aside."""
        connection = self._workers.connections.get(worker)
        if connection is None or worker in self.held_workers or not self._controls.takes_builds(connection):
            return False
        try:
            running = [b.builder for b in self._on.get(connection, {}).values()]
            return takes_build(builder, connection.spec.max_builds, running)
        except Exception as exc:
            self._hold(self.held_workers, "worker", worker, exc)
            return False

    def _hold(self, held: dict[str, str], kind: str, name: str, exc: Exception) -> None:
        """Set a builder or a worker aside after ``exc``, logging it once; the others go on."""
        held[name] = f"dispatching failed: {type(exc).__name__}: {exc}"
        log.error(
            "dispatching %s %s failed; it is held aside until the pipeline changes, and the others go on",
            kind,
            name,
            exc_info=exc,
        )

    async def _run(self, build: RunningBuild) -> None:
        request = build.request
        try:
            await build.execute()
        finally:
            # The worker is free as soon as the steps are done; recording goes on in the store.
            self._not_running(build)
            self.locks.release(request.id)
            self._recording.add(request.id)
            if build.connection is not None:  # None: it ended without a worker (rejected while waiting, say)
                self._controls.build_ended(build.connection)
                self._instances.build_ended(build.worker)
            if build.result is not None:  # before the worker it freed takes another cell of its matrix
                fail_fast(self._pipeline().builder(request.builder), request, build.result, self.running.values(), self)
            self.schedule()
        try:
            failure = await build.recorded()
            self._recorded(build, build.result, failure)  # the result as recorded (lost log lines make WARNINGS)
        finally:
            self._recording.discard(request.id)
            self._ended(request)
            self.update_idle()

    def _recorded(self, build: RunningBuild, result: Result, failure: BaseException | None) -> None:
        """Act on how the build's end went into the store: its request runs again (RETRY), is done,
        or, when the end could not be stored, stays pending there until the master restarts."""
        request = build.request
        if isinstance(failure, NotFound):
            log.info("build request %d was withdrawn before it started: %s", request.id, failure)
        elif failure is not None:
            log.error(
                "build %s #%d could not be recorded: %s; its request stays pending until the master restarts",
                build.builder,
                build.number,
                failure,
            )
            self.request_done(request, Result.EXCEPTION)  # whoever waits for it must not wait for ever
        elif result == Result.RETRY:
            builder = self._pipeline().builder(request.builder)
            retry = builder.retry if builder is not None else None
            if retry is not None and retry.delay and self.active:
                later = asyncio.get_running_loop().call_later(retry.delay, self._requeue, request)
                self._delayed[request.id] = later
            else:
                self._requeue(request)
        else:
            self._attempts.pop(request.id, None)
            self.request_done(request, result)

    def _requeue(self, request: BuildRequest) -> None:
        """Queue a request whose build ended as RETRY, to run again."""
        self._delayed.pop(request.id, None)
        if self.active:
            self.queue.add(request)
            self.schedule()
        self.update_idle()

    def update_idle(self) -> None:
        if not self.queue and not self.running and not self._recording and not self._delayed and not self._busy():
            self.idle.set()
        else:
            self.idle.clear()
