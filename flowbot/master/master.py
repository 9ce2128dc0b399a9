"""The master: one asyncio loop that owns the pipeline, the store, the workers and the HTTP API.

The same :class:`Master` runs headless (``flowbot start``), inside a Jupyter kernel, and in tests.
It makes every decision: which scheduler wants a change, which request runs next and where, what
a build's result is. Every record is in the store before anything acts on it, so a master killed
at any moment and started again carries on with every request it had accepted.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..defaults import HEARTBEAT_INTERVAL, HTTP_HOST, HTTP_PORT, LIVENESS, SQLITE_FILE, STOP_GRACE, WORKER_ENDPOINT
from ..errors import InvalidRequest, NotFound, StoreError
from ..pipeline import Pipeline
from ..records import BuildRequest, Change
from ..results import Result
from ..store import Store, janitor
from .build import RunningBuild
from .events import EventBus
from .queue import BuildQueue
from .registry import WorkerConnection, WorkerRegistry

if TYPE_CHECKING:
    from ..analysis import History

log = logging.getLogger(__name__)

#: Seconds between writes of the workers' last-seen times.
_SEEN_INTERVAL = 10.0


class Master:
    """A flowbot master.

    Args:
        pipeline: what to run.
        db: a SQLAlchemy URL; None means ``basedir/state.sqlite``, or a temporary file without basedir.
        basedir: the master directory, if there is one.
        http: ``"HOST:PORT"`` to serve the API on (port 0: any free port), or None for no HTTP.
        workers: the ZeroMQ endpoint workers dial into (port 0: any free port).
        heartbeat: seconds between heartbeats; a worker silent for ``heartbeat * liveness`` is lost.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        db: str | None = None,
        basedir: str | Path | None = None,
        http: str | None = f"{HTTP_HOST}:{HTTP_PORT}",
        workers: str = WORKER_ENDPOINT,
        heartbeat: float = HEARTBEAT_INTERVAL,
        liveness: int = LIVENESS,
        name: str | None = None,
    ):
        self.pipeline = pipeline
        self.basedir = Path(basedir).resolve() if basedir else None
        self._tempdir: str | None = None
        if db is None:
            if self.basedir is None:
                self._tempdir = tempfile.mkdtemp(prefix="flowbot-master-")
            db = f"sqlite:///{Path(self._tempdir or self.basedir) / SQLITE_FILE}"
        self.db_url = db
        self.http_address = http
        self.name = name or f"{socket.gethostname()}:{self.basedir or 'embedded'}"
        self.events = EventBus()
        self.queue = BuildQueue()
        self.store: Store | None = None
        self.registry = WorkerRegistry(
            {w.name: w for w in pipeline.workers},
            workers,
            self.events,
            on_connected=self._worker_connected,
            on_lost=self._worker_lost,
            heartbeat=heartbeat,
            liveness=liveness,
        )
        self.running: dict[int, RunningBuild] = {}  # by request id
        self._recording = 0  # builds whose steps are done and whose records are on their way
        self.http_url: str | None = None
        self._http_server: Any = None
        self._numbers: dict[str, int] = {}
        self._assign_scheduled = False
        self._idle = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        self._started = False

    @property
    def history(self) -> History:
        """The build history as pandas DataFrames (:class:`flowbot.History` on this master's database)."""
        from ..analysis import History  # pandas loads only when someone asks

        return History(self.db_url)

    @property
    def worker_endpoint(self) -> str:
        """Where workers dial in (the bound address once started)."""
        return self.registry.endpoint

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, resume the queue, and start serving workers and HTTP."""
        self.store = await Store.open(self.db_url)
        try:
            now = time.time()
            retried = await self.store.recover(now)
            if retried:
                log.warning(
                    "%d build(s) were running when the master stopped; they end as RETRY and run again", retried
                )
            self._numbers = await self.store.next_build_numbers()
            pending = await self.store.pending_requests()
            for request in pending:
                self.queue.add(request)
            if pending:
                log.info("resuming %d pending build request(s)", len(pending))
            self.registry.start()
            if self.http_address is not None:
                from .http import serve

                self._http_server, self.http_url = serve(self, self.http_address)
                log.info("HTTP API on %s", self.http_url)
        except BaseException:
            await self._close()
            raise
        self._started = True
        self._spawn(self._remember_workers(), "remember workers")
        if self.pipeline.retention is not None:
            self._spawn(janitor.run(self.store, self.pipeline.retention), "janitor")
        self._update_idle()
        self._schedule_assign()

    async def stop(self) -> None:
        """Stop serving; running builds end as RETRY so they run again on the next start."""
        if self._stopping:
            return
        self._stopping = True
        if self._http_server is not None:
            self._http_server.stop()
        builds = list(self.running.values())
        for build in builds:
            build.stop("the master is shutting down", Result.RETRY)
        tasks = [t for t in self._tasks if t.get_name().startswith("build ")]
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE + 2)
        await self._close()

    async def _close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.registry.stop()
        if self._http_server is not None:
            await self._http_server.close_all_connections()
        if self.store is not None:
            await self.store.close()
        if self._tempdir:
            shutil.rmtree(self._tempdir, ignore_errors=True)

    async def __aenter__(self) -> Master:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %s", task.get_name(), task.exception())

    # -- what people and change sources ask for ---------------------------------------------

    async def add_change(self, change: Change) -> tuple[int, list[int]]:
        """Accept a change: store it with the requests schedulers make of it, then queue them.

        Returns:
            The change id and the new build request ids.
        """
        specs = []
        for scheduler in self.pipeline.schedulers:
            try:
                spec = scheduler.on_change(change)
            except Exception:
                log.exception("scheduler %s failed on change %s; the change is kept", scheduler.name, change.revision)
                continue
            if spec is not None:
                specs.append(spec)
        change_id, requests = await self.store.add_change(change, specs, time.time())
        self.events.emit(
            "change.new", change_id=change_id, branch=change.branch, revision=change.revision, author=change.author
        )
        self._enqueue(requests)
        return change_id, [r.id for r in requests]

    async def force(
        self,
        builder: str,
        *,
        reason: str = "",
        branch: str | None = None,
        revision: str | None = None,
        owner: str = "",
        properties: dict[str, Any] | None = None,
    ) -> list[int]:
        """Force a build of ``builder`` through the force scheduler that lists it.

        Raises:
            NotFound: no such builder, or no force scheduler lists it.
        """
        if self.pipeline.builder(builder) is None:
            raise NotFound(f"no builder named {builder!r}")
        scheduler = self.pipeline.force_scheduler_for(builder)
        if scheduler is None:
            raise NotFound(f"no force scheduler lists builder {builder!r}")
        spec = scheduler.force(
            [builder], reason=reason, branch=branch, revision=revision, owner=owner, properties=properties
        )
        requests = await self.store.add_buildset(spec, time.time())
        self._enqueue(requests)
        return [r.id for r in requests]

    async def stop_build(self, build_id: int, reason: str = "") -> None:
        """Stop a running build; it ends as CANCELLED.

        Raises:
            NotFound: no build with that id is running.
        """
        for build in self.running.values():
            if build.id == build_id:
                build.stop(reason or "stopped by request")
                return
        await self.store.build(build_id)  # raises NotFound for a build that never existed
        raise InvalidRequest(f"build {build_id} is not running")

    async def cancel_request(self, request_id: int) -> None:
        """Withdraw a pending request; it completes as CANCELLED without a build."""
        if request_id not in self.queue:
            raise NotFound(f"no pending build request {request_id} waiting in the queue")
        await self.store.cancel_request(request_id, time.time())
        self.queue.remove(request_id)
        self._update_idle()

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until nothing is queued or running.

        Raises:
            TimeoutError: still busy after ``timeout`` seconds.
        """
        await asyncio.wait_for(self._idle.wait(), timeout)

    # -- assigning requests to workers ----------------------------------------------------------

    def _enqueue(self, requests: list[BuildRequest]) -> None:
        for request in requests:
            self.queue.add(request)
            self.events.emit(
                "request.new",
                request_id=request.id,
                builder=request.builder,
                branch=request.branch,
                revision=request.revision,
            )
        self._update_idle()
        self._schedule_assign()

    def _schedule_assign(self) -> None:
        if not self._assign_scheduled and self._started and not self._stopping:
            self._assign_scheduled = True
            asyncio.get_running_loop().call_soon(self._assign)

    def _assign(self) -> None:
        self._assign_scheduled = False
        if self._stopping:
            return
        for name in self.queue.builders():
            builder = self.pipeline.builder(name)
            if builder is None:
                continue  # requests for a builder the pipeline no longer has wait for it to return
            while True:
                connection = self._free_worker(builder)
                if connection is None:
                    break
                request = self.queue.pop(name)
                if request is None:
                    break
                number = self._numbers.get(name, 1)
                self._numbers[name] = number + 1
                build = RunningBuild(self, builder, request, connection, number)
                self.running[request.id] = build
                self._spawn(self._run_build(build), f"build {name} #{number}")

    def _free_worker(self, builder: Any) -> WorkerConnection | None:
        """The least busy connected worker of ``builder`` that is not already building it."""
        best, best_load = None, None
        for name in builder.workers:
            connection = self.registry.connections.get(name)
            if connection is None:
                continue
            builds = [b for b in self.running.values() if b.connection is connection]
            if any(b.builder == builder.name for b in builds):
                continue
            limit = connection.spec.max_builds
            if limit is not None and len(builds) >= limit:
                continue
            if best_load is None or len(builds) < best_load:
                best, best_load = connection, len(builds)
        return best

    async def _run_build(self, build: RunningBuild) -> None:
        request = build.request
        result = None
        try:
            result = await build.execute()
        finally:
            # The worker is free as soon as the steps are done; recording goes on in the store's
            # queue, whose order guarantees the next claim comes after this build's end.
            self.running.pop(request.id, None)
            self._recording += 1
            if result == Result.RETRY and not self._stopping:
                self.queue.add(request)
            self._schedule_assign()
        try:
            await build.recorded()
        except NotFound as exc:
            log.info("build request %d was withdrawn before it started: %s", request.id, exc)
        except StoreError as exc:
            log.error(
                "build %s #%d could not be recorded: %s; its request stays pending", build.builder, build.number, exc
            )
        finally:
            self._recording -= 1
            self._update_idle()

    def _update_idle(self) -> None:
        if not self.queue and not self.running and not self._recording:
            self._idle.set()
        else:
            self._idle.clear()

    # -- workers --------------------------------------------------------------------------------

    def _worker_connected(self, connection: WorkerConnection) -> None:
        self._spawn(
            self.store.worker_connected(connection.name, connection.info, connection.connected_at),
            f"worker {connection.name} connected",
        )
        self._schedule_assign()

    def _worker_lost(self, connection: WorkerConnection) -> None:
        self._spawn(
            self.store.worker_disconnected(connection.name, time.time(), connection.last_seen),
            f"worker {connection.name} lost",
        )

    async def _remember_workers(self) -> None:
        while True:
            await asyncio.sleep(_SEEN_INTERVAL)
            seen = {name: c.last_seen for name, c in self.registry.connections.items()}
            try:
                await self.store.workers_seen(seen)
            except StoreError as exc:
                log.warning("could not record workers' last-seen times: %s", exc)
