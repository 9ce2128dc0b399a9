"""The master: one asyncio loop that owns the pipeline, the store and the workers, and starts its faces.

The same :class:`Master` runs headless (``flowbot start``), inside a Jupyter kernel, and in tests.
It makes every decision: which scheduler wants a change, which request runs next and where, what
a build's result is. Every record is in the store before anything acts on it, so a master killed
at any moment and started again carries on with every request it had accepted, and takes up the
builds its workers still run (see :mod:`flowbot.master.adoption`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..defaults import HEARTBEAT_INTERVAL, INSTANCE_KEY_FILE, LIVENESS, SQLITE_FILE, STOP_GRACE
from ..errors import ConfigError, InvalidRequest, NotFound, StoreError
from ..pipeline import Pipeline
from ..records import MATRIX_SOURCE, Build, BuildRequest, BuildsetSpec, Change, SourceStamp
from ..results import Result
from ..schedulers.triggerable import Dependent, Triggerable
from ..store import Store, janitor, log_search
from .adoption import Adoption
from .approvals import Approvals
from .build import RunningBuild
from .controls import MasterControls
from .dispatch import Dispatcher
from .events import EventBus, EventKind
from .latent import LatentWorkers
from .local_workers import LocalWorkers
from .loop_lag import LoopLag
from .reconfiguration import Outcome, Reconfiguration, preview
from .registry import WorkerConnection, WorkerRegistry
from .reporting import Reporting
from .rerun import Follower, rerun_spec
from .scheduling import Scheduling
from .sources import Sources
from .status import Status
from .tasks import Tasks
from .transfers import artifacts_root
from .worker_control import WorkerControl

if TYPE_CHECKING:
    from ..analysis import History
    from ..builder import Builder

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds between writes of the workers' last-seen times.
_SEEN_INTERVAL = 10.0


class Face(Protocol):
    """A way in to the master from outside it (the HTTP server, :class:`flowbot.web.http.HttpFace`),
    attached before the master starts: started once the master takes work, stopped with it."""

    #: Where people reach the master through it once started, if they can (the page's address).
    url: str | None

    async def start(self) -> None: ...

    def stop(self) -> None:
        """Take nothing new."""

    async def close(self) -> None:
        """End what is still open."""


class Master:
    """A flowbot master, without faces of its own: :class:`flowbot.Master` is this one serving HTTP.

    Args:
        pipeline: what to run.
        db: a SQLAlchemy URL; None means ``basedir/state.sqlite``, or a temporary file without basedir.
        basedir: the master directory, if there is one.
        workers: the ZeroMQ endpoint workers dial into (port 0, the default: any free port).
        heartbeat: seconds between heartbeats; a worker silent for ``heartbeat * liveness`` is lost.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        db: str | None = None,
        basedir: str | Path | None = None,
        workers: str = "tcp://127.0.0.1:0",
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
        self.name = name or f"{socket.gethostname()}:{self.basedir or 'embedded'}"
        #: The master's events: subscribe to them, or ``async for event in master.events(...)``.
        self.events = EventBus(known_builder=lambda name: self.pipeline.builder(name) is not None)
        #: Builds that wait for a person's decision (Approval steps).
        self.approvals = Approvals(self.events)
        #: Every task the master and its parts run.
        self.tasks = Tasks()
        #: How late the event loop runs (``/metrics``: ``flowbot_loop_lag_seconds``).
        self.loop_lag = LoopLag()
        self.store: Store | None = None
        self.registry = WorkerRegistry(
            {w.name: w for w in pipeline.workers},
            workers,
            self.events,
            on_connected=self._worker_connected,
            on_lost=self._worker_lost,
            adopt=self._worker_returned,
            heartbeat=heartbeat,
            liveness=liveness,
            curve=pipeline.curve,
            spawn=self.tasks.spawn,
        )
        self._instance_key: bytes | None = None
        self.worker_control = WorkerControl(
            store=lambda: self.store,
            registry=self.registry,
            events=self.events,
            builds_on=lambda connection: self.dispatcher.builds_on(connection),
            worker_ready=lambda name: self.dispatcher.worker_ready(name),
        )
        #: Workers started on demand (those with a launcher) and their instances.
        self.latent = LatentWorkers(
            master=self.instance_id,
            endpoint=self.dial_endpoint,
            specs=self.registry.instances,
            keys=self.registry.local_keys,
            credential_key=self._credential_key,
            master_key=lambda: self.registry.curve and self.registry.curve.public,
            drop=self.registry.forget,
            wake=lambda: self.dispatcher.schedule(),
            spawn=self.spawn,
            paused=lambda name: name in self.worker_control.paused,
        )
        self.registry.claim = self.latent.claim
        self.dispatcher = Dispatcher(
            pipeline=lambda: self.pipeline,
            store=lambda: self.store,
            workers=self.registry,
            controls=self.worker_control,
            instances=self.latent,
            events=self.events,
            spawn=self.spawn,
            new_build=self._new_build,
            busy=lambda: self.adoption.busy,
        )
        #: What the master is doing, read for people (the API, the panel).
        self.status = Status(
            pipeline=lambda: self.pipeline,
            connections=self.registry.connections,
            running=self.dispatcher.running,
            builds_on=self.dispatcher.builds_on,
            controls=self.worker_control,
            held_workers=self.dispatcher.held_workers,
            queue=self.queue,
            why_waiting=self.dispatcher.why_waiting,
            running_count=self.dispatcher.running_count,
            held_builders=self.dispatcher.held_builders,
            remembered=lambda: self.store.workers,
            builds=lambda: self.store.builds,
            events=self.events,
        )
        self.adoption = Adoption(
            pipeline=lambda: self.pipeline,
            store=lambda: self.store,
            dispatcher=self.dispatcher,
            new_build=self._new_build,
            spawn=self.spawn,
        )
        self.scheduling = Scheduling(
            pipeline=lambda: self.pipeline, store=lambda: self.store, spawn=self.spawn, enqueue=self.enqueue
        )
        self.sources = Sources(self)
        self.local_workers = LocalWorkers(
            pipeline=lambda: self.pipeline,
            workdir=lambda: self.workdir,
            endpoint=self.dial_endpoint,
            registry=self.registry,
        )
        self.reporting = Reporting(
            pipeline=lambda: self.pipeline,
            store=lambda: self.store,
            events=self.events,
            spawn=self.spawn,
            page=lambda: self.page_url,
            controls=MasterControls(
                status=self.status,
                builds=lambda: self.store.builds,
                page=lambda: self.page_url,
                force=self.force,
            ),
        )
        #: The ways in to the master from outside it, started with it (see :meth:`attach`).
        self.faces: list[Face] = []
        self._stopping = False
        self._history: History | None = None
        self._janitor: asyncio.Task | None = None
        self._reconfiguring = asyncio.Lock()
        self._wanted: Pipeline | None = None  # the pipeline the latest reconfigure asked for
        self._using: tuple[Pipeline, asyncio.Task] | None = None  # the pipeline last handed to use()
        self._failed: tuple[Pipeline, Exception] | None = None  # the last pipeline that could not be applied

    @property
    def workdir(self) -> Path:
        """Where the master keeps files: its directory, or a temporary one made for it."""
        if self.basedir is not None:
            return self.basedir
        if self._tempdir is None:
            self._tempdir = tempfile.mkdtemp(prefix="flowbot-master-")
        return Path(self._tempdir)

    @property
    def artifacts_dir(self) -> Path:
        """The directory that builds' files are stored in on the master (``Pipeline(artifacts=)``)."""
        return artifacts_root(self.pipeline.artifacts, self.basedir or Path.cwd())

    @property
    def page_url(self) -> str | None:
        """Where the master's page is served, if it is: ``Pipeline(url=)``, else its own address."""
        return self.pipeline.url or next((face.url for face in self.faces if face.url), None)

    @property
    def history(self) -> History:
        """The build history as pandas DataFrames (:class:`flowbot.History` on this master's database)."""
        if self._history is None:
            from ..analysis import History  # pandas loads only when someone asks

            self._history = History(self.db_url)
        return self._history

    @property
    def worker_endpoint(self) -> str:
        """Where workers dial in (the bound address once started)."""
        return self.registry.endpoint

    @property
    def instance_id(self) -> str:
        """What labels the instances this master starts: the same for this master across restarts
        (its name and database), another for any other master."""
        return hashlib.sha256(f"{self.name}\n{self.db_url}".encode()).hexdigest()[:16]

    def _credential_key(self) -> bytes:
        """The key instances' credentials are derived from, kept in the master's directory (0600) so
        that a master started again knows its instances' credentials."""
        if self._instance_key is None:
            path = self.workdir / INSTANCE_KEY_FILE
            try:
                self._instance_key = bytes.fromhex(path.read_text().strip())
            except (OSError, ValueError):
                self._instance_key = secrets.token_bytes(32)
                path.touch(mode=0o600)
                path.write_text(self._instance_key.hex() + "\n")
        return self._instance_key

    def dial_endpoint(self) -> str:
        """Where workers on this host dial the master (a wildcard address read as loopback)."""
        return self.worker_endpoint.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:").replace(
            "tcp://*:", "tcp://127.0.0.1:"
        )

    @property
    def queue(self):
        return self.dispatcher.queue

    @property
    def running(self) -> dict[int, RunningBuild]:
        """Builds running now, by request id."""
        return self.dispatcher.running

    @property
    def locks(self):
        return self.dispatcher.locks

    # -- lifecycle ----------------------------------------------------------------------------

    def attach(self, face: Face) -> None:
        """Start ``face`` with the master (once its store is open and its workers can connect) and
        stop it with the master."""
        self.faces.append(face)

    async def start(self) -> None:
        """Open the store, resume the queue and the schedulers' timers, start the faces."""
        self.store = await Store.open(self.db_url)
        try:
            await self.adoption.load(self.registry.hold)
            self.dispatcher.numbers = await self.store.builds.next_numbers()
            await self.worker_control.load()
            pending = [r for r in await self.store.requests.pending() if r.id not in self.adoption.held]
            for request in pending:
                self.dispatcher.queue.add(request)
            if pending:
                log.info("resuming %d pending build request(s)", len(pending))
            # Instances to take up are admitted before their workers can knock.
            self.latent.use(self.pipeline.workers)
            await self.latent.start({r.worker for r in self.adoption.held.values()}, self.registry.window)
            self.registry.start()
            self.adoption.start(self.registry.hold)
            for face in self.faces:
                await face.start()
            await self.scheduling.start()
            await self.sources.start()
        except BaseException:
            await self._close()
            raise
        self.reporting.start()
        self.store.when_available(self._store_back)
        self.dispatcher.active = True
        self.spawn(self.loop_lag.run(), "loop lag")
        self.spawn(self._remember_workers(), "remember workers")
        if self.store.logs.queues_search:
            self.spawn(
                log_search.run(self.store.engine, self.store.logs.queued, self._unsearched), "log search indexing"
            )
        self._start_janitor()
        self._warn()
        self.dispatcher.update_idle()
        self.dispatcher.schedule()

    def _unsearched(self) -> frozenset[str]:
        """The builders whose logs log search leaves out (``Builder(search_logs=False)``)."""
        return frozenset(b.name for b in self.pipeline.builders if not b.search_logs)

    async def start_local_workers(self, names: list[str] | None = None, *, timeout: float = 30.0) -> list[str]:
        """Start a real worker process on this host for each worker the pipeline declares (or
        ``names``), and wait until they are connected; they stop with the master."""
        return await self.local_workers.start(names, timeout=timeout)

    async def stop(self) -> None:
        """Stop serving; running builds end as RETRY so they run again on the next start."""
        if self._stopping:
            return
        self._stopping = True
        self.dispatcher.active = False
        self.adoption.stop()
        self.scheduling.stop()
        await self.sources.stop()
        for face in self.faces:
            face.stop()
        for build in list(self.running.values()):
            build.stop("the master is shutting down", Result.RETRY)
        tasks = self.tasks.named("build ")
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE + 2)
        await self.latent.stop()
        await self.local_workers.stop()
        await self.reporting.stop()
        await self._close()

    async def _close(self) -> None:
        await self.tasks.cancel()
        await self.registry.stop()
        for face in self.faces:
            await face.close()
        if self.store is not None:
            await self.store.close()
        if self._history is not None:
            self._history.close()
        if self._tempdir:
            shutil.rmtree(self._tempdir, ignore_errors=True)

    async def __aenter__(self) -> Master:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str, *, watched: bool = False) -> asyncio.Task[T]:
        """Run ``coro`` as a task the master owns: cancelled at stop, its failure logged unless
        it is ``watched`` (see :meth:`Tasks.spawn <flowbot.master.tasks.Tasks.spawn>`)."""
        return self.tasks.spawn(coro, name, watched=watched)

    def _new_build(
        self, builder: Builder, request: BuildRequest, connection: WorkerConnection, number: int
    ) -> RunningBuild:
        """A build of ``request`` on ``connection``, run with this master's services (the master is
        its :class:`~flowbot.master.services.BuildServices`)."""
        return RunningBuild(self, builder, request, connection, number)

    def schedule(self) -> None:
        """Look again for builds that can start."""
        self.dispatcher.schedule()

    def _store_back(self) -> None:
        """The store takes writes again after an outage: builds start again, and no request it
        holds as pending is left behind."""
        self.dispatcher.schedule()
        self.spawn(self.dispatcher.requeue_pending(), "requeue pending requests")

    # -- changing the pipeline while it runs ----------------------------------------------------

    def _start_janitor(self) -> None:
        """Run the janitor with the pipeline's retention, instead of any it ran with before."""
        if self._janitor is not None:
            self._janitor.cancel()
            self._janitor = None
        if self.pipeline.retention is not None:
            self._janitor = self.spawn(janitor.run(self.store, self.pipeline.retention, self.artifacts_dir), "janitor")

    async def reconfigure(self, pipeline: Pipeline, *, dry_run: bool = False) -> Reconfiguration:
        """Run ``pipeline`` from now on: new builders take work, removed ones finish what they run.

        Running builds finish with the steps they began with; requests for a builder that is gone
        wait in the store until a pipeline has it again. Reconfigures run one at a time; of those
        asked for while one runs, only the last is applied.

        Returns:
            What it changed and did to the work running and waiting; with ``dry_run``, what it
            would, the master going on as it was.
        """
        if dry_run:
            return self.preview(pipeline)
        report = self.preview(pipeline, Outcome.APPLYING)
        self._wanted = pipeline
        await self._reconfigure_to_wanted()
        return report.ended(None)

    def preview(self, pipeline: Pipeline, outcome: Outcome = Outcome.DRY_RUN) -> Reconfiguration:
        """What switching to ``pipeline`` would change, and do to the builds running and waiting now."""
        return preview(
            self.pipeline,
            pipeline,
            running=self.running.values(),
            pending=self.queue,
            connected=self.registry.connections,
            outcome=outcome,
        )

    async def _reconfigure_to_wanted(self) -> None:
        async with self._reconfiguring:
            pipeline, self._wanted = self._wanted, None
            if pipeline is not None and not self._stopping:  # None: a later request applied it already
                await self._apply(pipeline)

    async def _apply(self, pipeline: Pipeline) -> None:
        """Switch to ``pipeline``; if that fails half way (a scheduler of its own that raises,
        say), switch back to the pipeline before, whole, and raise."""
        old = self.pipeline
        try:
            await self._switch(pipeline)
        except Exception as exc:
            log.error("the new pipeline could not be applied (%r); the master goes on with the one before", exc)
            self._failed = (pipeline, exc)
            await self._switch(old)
            raise
        if pipeline.retention is not old.retention:
            self._start_janitor()
        added = sorted({b.name for b in pipeline.builders} - {b.name for b in old.builders})
        removed = sorted({b.name for b in old.builders} - {b.name for b in pipeline.builders})
        log.info("reconfigured: builders added %s, removed %s", added or "none", removed or "none")
        self.events.emit(EventKind.MASTER_RECONFIGURED, added=added, removed=removed)
        self.dispatcher.release_held()
        self._warn()
        self.dispatcher.schedule()

    def _warn(self) -> None:
        """Log what the running pipeline allows that is unsafe (a worker without a secret)."""
        for warning in self.pipeline.warnings:
            log.warning("%s", warning)

    async def _switch(self, pipeline: Pipeline) -> None:
        """Stop the timers and change sources of the running pipeline and start ``pipeline``'s."""
        self.scheduling.stop()
        await self.sources.stop()
        self.pipeline = pipeline
        self.registry.set_workers(pipeline.workers)
        self.registry.set_curve(pipeline.curve)
        self.latent.use(pipeline.workers)
        for name in [n for n in self.registry.connections if n not in self.registry.workers]:
            log.info("worker %s is no longer in the pipeline; it gets no new builds", name)
        await self.scheduling.start()
        await self.sources.start()
        self.reporting.use(pipeline.reporters)

    def panel(self, *, recent: int = 10) -> Any:
        """A live ipywidgets panel of this master (for Jupyter; see :mod:`flowbot.notebook`)."""
        # The notebook layer is a face over the master; imported here, on demand, so a headless
        # master never loads ipywidgets.
        from ..notebook import MasterPanel

        return MasterPanel(self, recent=recent)

    def use(self, pipeline: Pipeline, *, dry_run: bool = False) -> Reconfiguration | None:
        """Switch to ``pipeline``: at once if the master is not running, else as soon as the loop
        can (what ``Pipeline(..., master=master)`` does when a notebook cell is run again).

        A running master first says what the switch changes and does to the builds running and
        waiting (in the cell's output, in a notebook; in its log), then applies it, unless it is
        a ``dry_run``. The next :meth:`force` or :meth:`wait_idle` waits for the switch, and raises
        ConfigError if it failed (a scheduler that raises as it is armed, say): a notebook shows
        why in the next cell that awaits the master, which goes on with the pipeline it had.
        """
        if self.store is None or self._stopping:
            if not dry_run:
                self.pipeline = pipeline
                self.registry.set_workers(pipeline.workers)
                self.registry.set_curve(pipeline.curve)
            return None
        report = self.preview(pipeline, Outcome.DRY_RUN if dry_run else Outcome.APPLYING)
        log.info("%s", report)
        shown = _show(report)
        if dry_run:
            return report
        self._wanted = pipeline
        task = self.spawn(self._reconfigure_to_wanted(), "reconfigure")
        self._using = (pipeline, task)
        if shown is not None:
            task.add_done_callback(lambda _: shown.update(self._verdict(report, pipeline)))
        return report

    def _verdict(self, report: Reconfiguration, pipeline: Pipeline) -> Reconfiguration:
        failed = self._failed
        return report.ended(failed[1] if failed is not None and failed[0] is pipeline else None)

    async def _used(self) -> None:
        """Wait until the pipeline last handed to :meth:`use` is applied; raise, once, if it could not be."""
        while self._using is not None:
            using = self._using
            pipeline, task = using
            await asyncio.wait([task])
            if self._using is not using:
                continue  # use() was called again meanwhile: wait for that pipeline instead
            self._using = None
            failed, self._failed = self._failed, None
            if failed is not None and failed[0] is pipeline:
                exc = failed[1]
                raise ConfigError(
                    f"the pipeline could not be applied ({type(exc).__name__}: {exc}); the master goes on with "
                    "the one before"
                ) from exc

    async def reload(self) -> None:
        """Read the master directory's pipeline again and apply it (``flowbot reconfig``, SIGHUP).

        Raises:
            ConfigError: the pipeline is broken; the master keeps running the one it had.
        """
        if self.basedir is None:
            raise InvalidRequest("this master has no directory to read a pipeline from")
        from ..config import load_pipeline

        await self.reconfigure(load_pipeline(self.basedir))

    # -- what people, change sources and builds ask for -----------------------------------------

    async def add_change(
        self, change: Change, *, owner: str = "", state: dict[str, Any] | None = None
    ) -> tuple[int, list[int]]:
        """Accept a change: store it with what schedulers decide about it (and ``state`` for the
        change source ``owner``, in the same transaction), then queue the builds.

        Returns:
            The change id and the new build request ids.
        """
        decisions = self.scheduling.decisions(change)
        received = time.time()
        try:
            change_id, requests = await self.store.changes.add(
                change, decisions, received, owner, state, self.scheduling.superseding()
            )
        except BaseException:
            self.scheduling.not_stored(decisions)
            raise
        self.scheduling.stored(decisions, dataclasses.replace(change, id=change_id), received)
        self.events.emit(
            EventKind.CHANGE_NEW,
            change_id=change_id,
            branch=change.branch,
            revision=change.revision,
            author=change.author,
        )
        await self._start(requests)
        return change_id, [r.id for r in requests]

    def enqueue(self, requests: list[BuildRequest]) -> None:
        """Queue stored requests for building."""
        if requests:
            self.dispatcher.enqueue(requests)

    def release_worker(self, build: RunningBuild) -> None:
        """Let ``build`` go on without its worker (see :meth:`Dispatcher.release_worker`)."""
        self.dispatcher.release_worker(build)

    async def worker_for(self, build: RunningBuild) -> None:
        """Give ``build`` a worker again (see :meth:`Dispatcher.worker_for`)."""
        await self.dispatcher.worker_for(build)

    async def _start(self, requests: list[BuildRequest]) -> None:
        """Queue stored requests and return once the builds that can start have: the caller's
        answer (an HTTP reply, a socket write that wakes its client) then no longer holds them up."""
        self.enqueue(requests)
        await self.dispatcher.assigned()

    async def submit(self, spec: BuildsetSpec, *, wait: float = 0.0) -> list[BuildRequest]:
        """Store a buildset and queue its requests; ``wait``: seconds it may wait for a database that
        cannot take it (else StoreUnavailable says so at once)."""
        requests = await self.store.requests.add_buildset(self.pipeline.with_cells(spec), time.time(), wait=wait)
        await self._start(requests)
        return requests

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
            InvalidRequest: a parameter is unknown, missing or of the wrong type.
            ConfigError: the pipeline last handed to :meth:`use` could not be applied.
        """
        await self._used()
        if self.pipeline.builder(builder) is None:
            raise NotFound(f"no builder named {builder!r}")
        scheduler = self.pipeline.force_scheduler_for(builder)
        if scheduler is None:
            raise NotFound(f"no force scheduler lists builder {builder!r}")
        try:
            spec = scheduler.force(
                [builder], reason=reason, branch=branch, revision=revision, owner=owner, properties=properties
            )
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        return [r.id for r in await self.submit(spec)]

    async def trigger(
        self,
        build: RunningBuild,
        schedulers: list[str],
        sourcestamps: tuple[SourceStamp, ...],
        properties: dict[str, tuple[Any, str]],
        *,
        wait: bool,
    ) -> list[Result]:
        """Start a buildset of ``sourcestamps`` on each Triggerable scheduler for ``build``; with
        ``wait``, their results."""
        await build.started()
        waits = []
        for name in schedulers:
            scheduler = self.pipeline.scheduler(name)
            if not isinstance(scheduler, Triggerable):
                raise InvalidRequest(f"{name!r} is not a Triggerable scheduler of the running pipeline")
            spec = scheduler.triggered(sourcestamps, properties, f"{build.builder} #{build.number}")
            spec = dataclasses.replace(spec, parent_build_id=build.id)
            # Once asked for, the buildset is stored and queued even if the parent stops meanwhile
            # (and then withdrawn), so no request is left pending with nobody queueing it.
            requests = await asyncio.shield(self._submit_child(build, spec))
            if wait and requests:
                waits.append(self.dispatcher.watch(requests[0].buildset_id, {r.id for r in requests}))
        return list(await asyncio.gather(*waits)) if waits else []

    async def _submit_child(self, build: RunningBuild, spec: BuildsetSpec) -> list[BuildRequest]:
        # A running build's request: it waits for an unavailable database, as the build's records do.
        requests = await self.submit(spec, wait=math.inf)
        if build.interrupted:
            for request in requests:
                if request.id in self.queue:
                    self.dispatcher.cancel(request)
        return requests

    def downstream(self, build: RunningBuild, result: Result) -> list[BuildsetSpec]:
        """Buildsets of ``Dependent`` schedulers that follow ``build``'s builder, if it succeeded
        (with or without warnings, as Buildbot has it). For a matrix cell the store keeps them for
        the last cell to pass, and they carry no cell's values."""
        if result not in (Result.SUCCESS, Result.WARNINGS):
            return []
        own = ("Build", MATRIX_SOURCE)
        props = {n: (v, "Dependent") for n, v in build.properties.items() if build.properties.source(n) not in own}
        return [
            self.pipeline.with_cells(
                s.upstream_succeeded(build.request.sourcestamps, props, f"{build.builder} #{build.number}")
            )
            for s in self.pipeline.schedulers
            if isinstance(s, Dependent) and build.builder in s.upstream
        ]

    async def stop_build(self, build_id: int, reason: str = "") -> None:
        """Stop a running build (and what it triggered); it ends as CANCELLED.

        Raises:
            NotFound: no build with that id exists. InvalidRequest: it is not running.
        """
        for build in self.running.values():
            if build.id == build_id:
                build.stop(reason or "stopped by request")
                return
        await self.store.builds.get(build_id)  # raises NotFound for a build that never existed
        raise InvalidRequest(f"build {build_id} is not running")

    def stop_children(self, build_id: int, reason: str, result: Result = Result.CANCELLED) -> None:
        """Stop the builds a build triggered; they end as ``result``, as it does.

        When someone stops the build (CANCELLED), its triggered requests still waiting are withdrawn
        too; when the master shuts down (RETRY), they stay pending for the next start, as every
        waiting request does.
        """
        for build in list(self.running.values()):
            if build.request.parent_build_id == build_id:
                build.stop(reason, result)
        if result == Result.RETRY:
            return
        for request in self.queue:
            if request.parent_build_id == build_id:
                self.dispatcher.cancel(request)

    async def cancel_request(self, request_id: int) -> None:
        """Withdraw a pending request; it completes as CANCELLED without a build."""
        request = self.queue.get(request_id)
        if request is None:
            raise NotFound(f"no pending build request {request_id} waiting in the queue")
        await self.dispatcher.cancel(request, awaited=True)

    async def rebuild(self, build_id: int, *, reason: str = "", owner: str = "") -> list[int]:
        """Request a build again: same sources and properties, linked to it by the ``rebuild_of`` property.

        Raises:
            NotFound: no such build. InvalidRequest: its builder is no longer in the pipeline.
        """
        build, spec = await self.store.builds.buildset_of(build_id)
        if self.pipeline.builder(build.builder) is None:
            raise InvalidRequest(f"builder {build.builder!r} is no longer in the pipeline")
        text = reason or f"rebuild of {build.builder} #{build.number}"
        if owner:
            text = f"{text} (by {owner})"
        properties = {**spec.properties, "rebuild_of": (build_id, "Rebuild")}
        spec = dataclasses.replace(spec, reason=text, properties=properties)
        return [r.id for r in await self.submit(spec)]

    async def rerun_step(
        self,
        build_id: int,
        step: int,
        *,
        worker: str | None = None,
        properties: dict[str, Any] | None = None,
        command: Any = None,
        output: Callable[[str], Any] | None = print,
        reason: str = "",
    ) -> Build:
        """Run step ``step`` (numbered from 1, as the page shows steps) of a finished build again, on
        its worker or ``worker``, with its properties and source (``properties`` and ``command``
        change them); each line of its output goes to ``output`` as it comes. The rerun is a build
        of its own, its ``rerun_of`` property naming ``build_id``; returns it as the store has it.

        Raises:
            NotFound: no such build. InvalidRequest: its builder is gone, or no such step or worker.
        """
        await self._used()
        _, spec = await self.store.builds.buildset_of(build_id)
        build = await self.store.builds.get(build_id)
        builder = self.pipeline.builder(build.builder)
        if builder is None:
            raise InvalidRequest(f"builder {build.builder!r} is no longer in the pipeline")
        spec = rerun_spec(
            build, spec, builder, step, worker=worker, properties=properties, command=command, reason=reason
        )
        follower = Follower(builder.name)
        unsubscribe = self.events.subscribe(follower, [EventKind.BUILD_STARTED, EventKind.LOG])
        try:
            [request] = await self.submit(spec)
            await follower.relay(request.id, self.dispatcher.watch(request.buildset_id, {request.id}), output)
        finally:
            unsubscribe()
        if follower.build_id is None:
            raise InvalidRequest(f"the rerun of build {build_id} ended without a build (it was cancelled)")
        return await self.store.builds.get(follower.build_id)

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until nothing is queued or running.

        Raises:
            TimeoutError: still busy after ``timeout`` seconds.
            ConfigError: the pipeline last handed to :meth:`use` could not be applied.
        """
        await self._used()
        await asyncio.wait_for(self.dispatcher.idle.wait(), timeout)

    # -- workers --------------------------------------------------------------------------------

    async def pause_worker(self, name: str, reason: str = "") -> None:
        """Give the worker no new builds (running ones go on) until it is unpaused, even across
        a restart of the master or the worker.

        Raises:
            NotFound: no worker of that name.
        """
        await self.worker_control.pause(name, reason)

    async def unpause_worker(self, name: str) -> None:
        """Let a paused worker take builds again, at once.

        Raises:
            NotFound: no worker of that name.
        """
        await self.worker_control.unpause(name)

    async def shutdown_worker(self, name: str, graceful: bool = True) -> None:
        """Make a connected worker process exit: once its running builds have ended (``graceful``),
        or now, its builds ending as RETRY so that they run again elsewhere. It takes no new
        builds meanwhile, and does not reconnect.

        Raises:
            NotFound: no worker of that name. InvalidRequest: it is not connected.
        """
        self.worker_control.shutdown(name, graceful)

    def _worker_connected(self, connection: WorkerConnection) -> None:
        self.spawn(
            self.store.workers.connected(connection.name, connection.info, connection.connected_at),
            f"worker {connection.name} connected",
        )
        self.latent.connected(connection.name)
        self.dispatcher.worker_ready(connection.name)

    def _worker_returned(self, connection: WorkerConnection, held: dict[str, Any]) -> None:
        self.adoption.returned(connection, held)

    def _worker_lost(self, connection: WorkerConnection) -> None:
        self.worker_control.lost(connection)
        self.latent.lost(connection.name)
        self.spawn(
            self.store.workers.disconnected(connection.name, time.time(), connection.last_seen),
            f"worker {connection.name} lost",
        )

    async def _remember_workers(self) -> None:
        while True:
            await asyncio.sleep(_SEEN_INTERVAL)
            seen = {name: c.last_seen for name, c in self.registry.connections.items()}
            try:
                await self.store.workers.seen(seen)
            except StoreError as exc:
                log.warning("could not record workers' last-seen times: %s", exc)


def _show(report: Reconfiguration) -> Any:
    """Show ``report`` in the notebook cell that runs now, if a notebook runs this master; its display handle."""
    if "IPython" not in sys.modules and "marimo" not in sys.modules:
        return None  # a headless master: the log says it
    from ..display import show

    return show(report)
