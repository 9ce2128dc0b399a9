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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..builder import Builder
from ..errors import NotFound, StoreError
from ..records import BuildRequest
from ..results import Result, worst
from .events import EventKind
from .locks import LockTable
from .policy import assignment_pass, collapsed, pick, takes_build
from .queue import BuildQueue
from .registry import WorkerConnection
from .waiting import WorkerFacts, why_waiting

if TYPE_CHECKING:
    from .build import RunningBuild
    from .master import Master
    from .services import BuildFactory

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Watch:
    """Someone waiting for every request of a buildset to complete."""

    pending: set[int]
    results: list[Result] = field(default_factory=list)
    done: asyncio.Future[Result] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Dispatcher:
    """The queue, the running builds, and the choice of what runs where."""

    def __init__(self, master: Master, new_build: BuildFactory):
        self.master = master
        self._new_build = new_build
        self.queue = BuildQueue()
        self.locks = LockTable()
        self.running: dict[int, RunningBuild] = {}  # by request id
        self.numbers: dict[str, int] = {}
        self._recording: set[int] = set()  # requests whose builds' records are on their way
        self._ended_while_reading: set[int] | None = None  # requests ended during requeue_pending's read
        self._scheduled = False
        self._pass_done: asyncio.Future[None] | None = None
        self._watches: dict[int, _Watch] = {}
        self.idle = asyncio.Event()
        self.active = False
        #: Builders, and workers, held aside after an unexpected error in dispatching them: why, by name.
        self.held_builders: dict[str, str] = {}
        self.held_workers: dict[str, str] = {}

    # -- requests in ------------------------------------------------------------------------------

    def enqueue(self, requests: list[BuildRequest]) -> None:
        """Queue new requests (already stored); older ones they collapse end as SKIPPED."""
        for request in requests:
            self._collapse_into(request)
            self.queue.add(request)
            self.master.events.emit(
                EventKind.REQUEST_NEW,
                request_id=request.id,
                builder=request.builder,
                branch=request.branch,
                revision=request.revision,
            )
        self.update_idle()
        self.schedule()

    def _collapse_into(self, new: BuildRequest) -> None:
        for old in collapsed(self.master.pipeline.builder(new.builder), new, self.queue):
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
        return self.master.spawn(completing, f"completing request {request.id}", watched=awaited)

    async def _complete_unbuilt(self, request: BuildRequest, result: Result) -> None:
        try:
            await self.master.store.requests.cancel(request.id, time.time(), result)
        except StoreError:
            if self.active:  # still pending in the store: it waits in line again
                self.queue.add(request)
                self.schedule()
            raise
        else:
            self._ended(request)
            self.request_done(request, result)
        finally:
            self.update_idle()
        self.master.events.emit(
            EventKind.REQUEST_CANCELLED, request_id=request.id, builder=request.builder, result=result.name
        )

    async def requeue_pending(self) -> None:
        """Queue the requests the store holds as pending and unclaimed that this master neither
        queues nor builds (run when the store is back after an outage)."""
        self._ended_while_reading = ended = set()
        try:
            pending = await self.master.store.requests.pending(unclaimed=True)
        finally:
            self._ended_while_reading = None
        missing = [
            r
            for r in pending
            if r.id not in self.queue and r.id not in self.running and r.id not in self._recording and r.id not in ended
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
        """Run an assignment pass soon (once, however often it is asked for in one turn)."""
        if not self._scheduled and self.active:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._assign)

    async def assigned(self) -> None:
        """Wait for the assignment pass that is due, if one is; the builds it starts have sent
        their first command to their workers by the time this returns."""
        if self._scheduled:
            if self._pass_done is None:
                self._pass_done = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._pass_done)

    def release_held(self) -> None:
        """Let held builders and workers try again (the pipeline changed)."""
        self.held_builders.clear()
        self.held_workers.clear()

    def _assign(self) -> None:
        self._scheduled = False
        try:
            if not self.active or not self.master.store.available:
                return  # the store's return schedules a pass
            assignment_pass(self.queue, self._start_or_hold)
            pipeline = self.master.pipeline
            self.master.latent.balance(b.workers for r in self.queue if (b := pipeline.builder(r.builder)))
        finally:
            # Waiters resume after the builds just started have run up to their first command.
            done, self._pass_done = self._pass_done, None
            if done is not None:
                done.set_result(None)

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
        builder = self.master.pipeline.builder(name)
        if builder is None:
            return False  # requests for a builder the pipeline no longer has wait for it to return
        free = {c.name: c for c in self._free_workers(builder)}
        picked = pick(builder, list(free), self.queue, self.locks, lambda worker: len(self.builds_on(free[worker])))
        if picked is None:
            return False
        request, worker = picked
        connection = free[worker]
        number = self.numbers.get(builder.name, 1)
        try:
            build = self._new_build(builder, request, connection, number)
        except BaseException:
            self.locks.release(request.id)  # the request stays in line, holding nothing
            raise
        self.queue.remove(request.id)
        self.numbers[builder.name] = number + 1
        self.running[request.id] = build
        self.master.latent.build_started(connection.name)
        self.master.spawn(self._run(build), f"build {builder.name} #{number}")
        return True

    def adopt(self, build: RunningBuild) -> None:
        """Run ``build``, taken up after a master restart (see :mod:`flowbot.master.adoption`); its
        builder's locks are held for it already."""
        self.running[build.request.id] = build
        self.master.latent.build_started(build.worker)
        self.master.spawn(self._run(build), f"build {build.builder} #{build.number}")
        self.update_idle()

    def why_waiting(self, name: str) -> str:
        """Why the pending requests of builder ``name`` have not started (see :mod:`.waiting`)."""
        builder = self.master.pipeline.builder(name)
        if builder is None:
            return why_waiting(name, False, [], True)
        facts = []
        for worker in builder.workers:
            spec = self.master.pipeline.worker(worker)
            connection = self.master.registry.connections.get(worker)
            control = self.master.worker_control.state(worker)
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
        free = [c.name for c in self._free_workers(builder)]
        locks_free = not free or any(self.locks.free(builder.locks, worker) for worker in free)
        return why_waiting(name, True, facts, locks_free)

    def builds_on(self, connection: WorkerConnection) -> list[RunningBuild]:
        """The builds running on ``connection``."""
        return [b for b in self.running.values() if b.connection is connection]

    def _free_workers(self, builder: Builder) -> list[WorkerConnection]:
        """Connected workers of ``builder`` that take builds (not paused, not leaving), are not
        building it and are below their limit."""
        free = []
        for name in self.master.latent.expand(builder.workers):
            connection = self.master.registry.connections.get(name)
            if (
                connection is None
                or name in self.held_workers
                or not self.master.worker_control.takes_builds(connection)
            ):
                continue
            try:
                running = [b.builder for b in self.builds_on(connection)]
                if takes_build(builder.name, connection.spec.max_builds, running):
                    free.append(connection)
            except Exception as exc:
                self._hold(self.held_workers, "worker", name, exc)
        return free

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
            self.running.pop(request.id, None)
            self.locks.release(request.id)
            self._recording.add(request.id)
            self.master.worker_control.build_ended(build.connection)
            self.master.latent.build_ended(build.worker)
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
            if self.active:
                self.queue.add(request)
                self.schedule()
        else:
            self.request_done(request, result)

    def update_idle(self) -> None:
        if not self.queue and not self.running and not self._recording and not self.master.adoption.busy:
            self.idle.set()
        else:
            self.idle.clear()
