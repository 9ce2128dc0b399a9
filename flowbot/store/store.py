"""The store: every record the master accepts, written before anything acts on it.

:class:`Store` is the master's only way into the database. Its methods are coroutines; the work
runs on one thread (the one bounded executor the master has), writes are group-committed by
:class:`~flowbot.store.writer.GroupWriter`, and the same code runs on SQLite and PostgreSQL.

While the database cannot take writes (a server restarting, a full disk), what is new (a change,
a forced build, a cancel) is refused at once with :class:`~flowbot.errors.StoreUnavailable`, so
its sender may try again, while the records of builds under way wait until the database is back
and are written then, in order: a build that started is recorded, and ends, whatever the outage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from ..defaults import LOG_CHUNK_BYTES, STORE_STOP_WAIT
from ..errors import InvalidRequest, NotFound, StoreError, StoreUnavailable
from ..records import BuildRequest, BuildsetSpec, Change, SourceStamp, UnfinishedBuild, UnfinishedStep
from ..results import Result
from . import change_links, log_pages, test_pages
from . import schema as t
from . import statements as sql
from .engine import checkpoint, create_engine, describe, migrate, unavailable
from .log_pages import LogPage
from .log_search import QUEUE_TABLE, index_queued
from .writer import GroupWriter

if TYPE_CHECKING:
    from ..junit import TestCase

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep a change for a scheduler, under a key, until its timer fires or it runs."""

    scheduler: str
    key: str
    important: bool


@dataclass(frozen=True, slots=True)
class Release:
    """Build what a scheduler holds under a key (plus the new change, if any), all in one go."""

    scheduler: str
    key: str
    #: The scheduler's decision on the changes, oldest first; None builds nothing.
    make_buildset: Callable[[list[Change]], BuildsetSpec | None]
    #: False when the caller knows nothing is held under the key (saves a query per change).
    held: bool = True


class Ref:
    """An id the store assigns when a queued write runs; writes queued after it may use it."""

    __slots__ = ("id",)

    def __init__(self) -> None:
        self.id: int | None = None

    def get(self) -> int:
        if self.id is None:
            raise StoreError("an earlier write that this one depends on failed")
        return self.id


class Store:
    """Async access to the database at ``url``; call :meth:`open` before use."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowbot-store")
        embedded = self.dialect == "sqlite"
        self._writer = GroupWriter(
            self.engine,
            self._executor,
            inline=embedded,
            checkpoint=self._checkpoint if embedded else None,
            failure=self._write_failed,
            probe=_probe,
        )
        #: Whether new log chunks wait in a queue for search indexing (see :mod:`.log_search`).
        self.queues_log_search = False
        #: Set when chunks may be queued for indexing (at first, what an earlier run left).
        self.logs_queued = asyncio.Event()
        self.logs_queued.set()

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and migrate to the current schema."""
        store = cls(url)

        def prepare(conn: sa.Connection) -> bool:
            migrate(store.engine)
            return sa.inspect(conn).has_table(QUEUE_TABLE)

        try:
            store.queues_log_search = await store._read(prepare)
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def available(self) -> bool:
        """False while the database cannot take writes (from a write it refused to one it took)."""
        return self._writer.available

    @property
    def held_writes(self) -> int:
        """How many writes wait for the database to come back."""
        return self._writer.held

    def when_available(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the database takes writes again after an outage."""
        self._writer.on_available = callback

    def _checkpoint(self) -> bool:
        with self.engine.connect() as connection:
            return checkpoint(connection)

    async def close(self) -> None:
        """Finish pending writes (giving up after a while those an unavailable database cannot
        take) and let go of the database."""
        loop = asyncio.get_running_loop()
        await self._writer.drain(STORE_STOP_WAIT)
        if self._writer.inline:
            self._writer.close()
        else:
            await loop.run_in_executor(self._executor, self._writer.close)
        if self.dialect == "sqlite":
            try:
                await loop.run_in_executor(self._executor, self._checkpoint)
            except sa.exc.SQLAlchemyError as exc:  # a full disk: the next start checkpoints what is left
                log.warning("the last checkpoint failed (%s); the write-ahead log keeps what it holds", describe(exc))
        await loop.run_in_executor(self._executor, self.engine.dispose)
        self._executor.shutdown(wait=True)

    def _submit(self, op: Callable[[sa.Connection], T], *, wait: float = 0.0) -> asyncio.Future[T]:
        """Queue a write; the future resolves once its transaction has committed. ``wait``: seconds
        it may wait for a database that cannot take it (``math.inf``: as long as it takes)."""
        return self._writer.submit(op, wait=wait)

    def _keep(self, op: Callable[[sa.Connection], T]) -> asyncio.Future[T]:
        """Queue a write that records what has happened already (a build's progress): if the
        database cannot take it, it waits until it can."""
        return self._writer.submit(op, wait=math.inf)

    def _write_failed(self, exc: Exception) -> Exception:
        """A database's refusal of a write or of its commit as a StoreError, or as StoreUnavailable
        when the database cannot take writes now (down, restarting, its disk full)."""
        # The hot path runs some statements on the driver's cursor: its errors count too.
        if isinstance(exc, sa.exc.SQLAlchemyError | self.engine.dialect.loaded_dbapi.Error):
            return _store_error(exc, "database write failed")
        return exc

    async def _read(self, fn: Callable[[sa.Connection], T]) -> T:
        def run() -> T:
            with self.engine.connect() as connection:
                return fn(connection)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except sa.exc.SQLAlchemyError as exc:
            raise _store_error(exc, "database read failed") from exc

    # -- changes and buildsets ------------------------------------------------------------------

    async def add_change(
        self,
        change: Change,
        decisions: Iterable[Hold | Release],
        now: float,
        owner: str = "",
        state: dict[str, Any] | None = None,
    ) -> tuple[int, list[BuildRequest]]:
        """Store a change with what schedulers decided about it, in one transaction.

        ``Hold`` keeps the change for a scheduler's timer; ``Release`` builds it now, together
        with whatever that scheduler held under the same key. ``state`` is remembered for
        ``owner`` (the change source) in the same transaction, so a source never reports the
        change again, nor forgets it.

        Raises:
            InvalidRequest: the branch or revision is longer than the store indexes.
        """
        for what, value in (("branch", change.branch), ("revision", change.revision)):
            if value is not None and len(value.encode()) > t.MAX_INDEXED_BYTES:
                raise InvalidRequest(
                    f"the change's {what} is {len(value.encode())} bytes long; at most {t.MAX_INDEXED_BYTES} are taken"
                )
        decisions = list(decisions)

        def op(conn: sa.Connection) -> tuple[int, list[BuildRequest]]:
            stored = _insert_change(conn, change, now)
            for key, value in (state or {}).items():
                _set_state(conn, owner, key, value)
            requests = []
            for decision in decisions:
                if isinstance(decision, Hold):
                    sql.INSERT_HELD.run(
                        conn,
                        {
                            "scheduler": decision.scheduler,
                            "change_id": stored.id,
                            "timer": decision.key,
                            "important": decision.important,
                        },
                    )
                else:
                    requests += _release(conn, decision, now, [stored])
            return stored.id, requests

        return await self._submit(op)

    async def release(
        self, decision: Release, now: float, owner: str = "", state: dict[str, Any] | None = None
    ) -> list[BuildRequest]:
        """Build what a scheduler held under a key (its timer fired), and remember ``state`` for
        ``owner`` in the same transaction (waiting for an unavailable database: the timer fired)."""

        def op(conn: sa.Connection) -> list[BuildRequest]:
            requests = _release(conn, decision, now, [])
            for key, value in (state or {}).items():
                _set_state(conn, owner, key, value)
            return requests

        return await self._keep(op)

    async def held_changes(self) -> list[tuple[str, str, bool, float]]:
        """``(scheduler, key, important, received_at)`` of every held change (to re-arm timers)."""
        held = t.scheduler_changes.c

        def fn(conn: sa.Connection) -> list[tuple[str, str, bool, float]]:
            rows = conn.execute(
                sa.select(held.scheduler, held.timer, held.important, t.changes.c.received_at).join(
                    t.changes, t.changes.c.id == held.change_id
                )
            )
            return [tuple(row) for row in rows]

        return await self._read(fn)

    async def get_state(self, owner: str) -> dict[str, Any]:
        """What ``owner`` (a change source or scheduler) remembered."""
        query = sa.select(t.state.c.key, t.state.c.value).where(t.state.c.owner == owner)
        return await self._read(lambda conn: dict(conn.execute(query).all()))

    async def set_state(self, owner: str, values: dict[str, Any]) -> None:
        def op(conn: sa.Connection) -> None:
            for key, value in values.items():
                _set_state(conn, owner, key, value)

        await self._submit(op)

    async def add_buildset(self, spec: BuildsetSpec, now: float, *, wait: float = 0.0) -> list[BuildRequest]:
        """Store a buildset and its requests (one per builder); ``wait``: seconds it may wait for a
        database that cannot take it (``math.inf`` for one a running build asks for)."""
        return await self._submit(lambda conn: _insert_buildset(conn, spec, now), wait=wait)

    async def pending_requests(self, *, unclaimed: bool = False) -> list[BuildRequest]:
        """Every request not yet complete (and, ``unclaimed``, that no build has taken), oldest first."""
        return await self._read(
            lambda conn: _pending_requests(conn, t.buildrequests.c.claimed_at.is_(None) if unclaimed else sa.true())
        )

    async def cancel_request(self, request_id: int, now: float, result: Result = Result.CANCELLED) -> None:
        """Complete a pending request without building it: CANCELLED, or SKIPPED when it was
        collapsed into a newer one."""

        def op(conn: sa.Connection) -> None:
            done = sql.COMPLETE_REQUEST.run(conn, {"p_id": request_id, "p_at": now, "p_result": int(result)})
            if done.rowcount != 1:
                raise NotFound(f"no pending build request {request_id}")
            buildset_id = conn.execute(
                sa.select(t.buildrequests.c.buildset_id).where(t.buildrequests.c.id == request_id)
            ).scalar_one()
            _complete_buildset(conn, buildset_id, now)

        await self._submit(op)

    # -- builds, steps, logs ----------------------------------------------------------------------

    async def next_build_numbers(self) -> dict[str, int]:
        """The number the next build of each builder gets."""

        def fn(conn: sa.Connection) -> dict[str, int]:
            rows = conn.execute(
                sa.select(t.builds.c.builder, sa.func.max(t.builds.c.number)).group_by(t.builds.c.builder)
            )
            return {builder: number + 1 for builder, number in rows}

        return await self._read(fn)

    def start_build(
        self, request: BuildRequest, number: int, worker: str, now: float, master: str, build: Ref
    ) -> asyncio.Future[None]:
        """Claim ``request`` and record its build as started; sets ``build.id``.

        Like the other build-progress writes, this returns at once with the future of the write:
        writes run in the order they were made, so later ones may use ``build.id`` before the
        caller has awaited anything.
        """

        def op(conn: sa.Connection) -> None:
            claimed = sql.CLAIM_REQUEST.run(conn, {"p_id": request.id, "p_at": now, "p_by": master})
            if claimed.rowcount != 1:
                # Tried again after a commit whose answer was lost with its connection?
                build.id = conn.execute(
                    sa.select(t.builds.c.id).where(
                        t.builds.c.request_id == request.id, t.builds.c.number == number, t.builds.c.started_at == now
                    )
                ).scalar()
                if build.id is None:
                    raise NotFound(f"build request {request.id} is no longer pending")
                return
            build.id = sql.INSERT_BUILD.insert(
                conn,
                {
                    "request_id": request.id,
                    "builder": request.builder,
                    "number": number,
                    "worker": worker,
                    "branch": request.branch,
                    "revision": request.revision,
                    "submitted_at": request.submitted_at,
                    "started_at": now,
                    "summary": "",
                },
            )

        return self._keep(op)

    def start_step(self, build: Ref, number: int, name: str, now: float, step: Ref) -> asyncio.Future[None]:
        """Record a step as started; sets ``step.id``."""

        def op(conn: sa.Connection) -> None:
            step.id = sql.INSERT_STEP.insert(
                conn,
                {
                    "build_id": build.get(),
                    "number": number,
                    "name": name,
                    "started_at": now,
                    "hidden": False,
                    "summary": "",
                },
            )

        return self._keep(op)

    def append_log(
        self, step: Ref, log: str, first_line: int, content: str, streams: str, *, wait: float = math.inf
    ) -> asyncio.Future[None]:
        """Add whole lines to a step's log (``streams`` tags each line: o, e or h); ``wait``: seconds
        the lines may wait for a database that cannot take them before they are given up."""
        chunk = {
            "log": log,
            "first_line": first_line,
            "last_line": first_line + len(streams) - 1,
            "content": content,
            "streams": streams,
        }

        def op(conn: sa.Connection) -> None:
            sql.INSERT_LOG_CHUNK.run(conn, {"step_id": step.get(), **chunk})

        if self.queues_log_search:
            self.logs_queued.set()
        return self._submit(op, wait=wait)

    def index_queued_logs(self, limit: int) -> asyncio.Future[int]:
        """Index up to ``limit`` queued log chunks for search; the future gives how many."""
        return self._submit(lambda conn: index_queued(conn, limit))

    def finish_step(
        self, step: Ref, result: Result, now: float, summary: str = "", *, hidden: bool = False
    ) -> asyncio.Future[None]:
        def op(conn: sa.Connection) -> None:
            sql.FINISH_STEP.run(
                conn,
                {"p_id": step.get(), "p_at": now, "p_result": int(result), "p_summary": summary, "p_hidden": hidden},
            )

        return self._keep(op)

    def finish_build(
        self,
        build: Ref,
        request: BuildRequest,
        result: Result,
        now: float,
        summary: str = "",
        *,
        revision: str | None = None,
        properties: dict[str, list[Any]] | None = None,
        locks_wait: float = 0.0,
        then: Iterable[BuildsetSpec] = (),
        final: Callable[[Result, str], tuple[Result, str]] | None = None,
    ) -> asyncio.Future[list[BuildRequest]]:
        """Record a build's end with its properties (``{name: [value, source]}``) and the revision
        it built (``got_revision``, for a build whose request named none).

        A RETRY puts its request back in the queue; anything else completes it. Buildsets in
        ``then`` (builds that depend on this one) are stored in the same transaction; the future
        gives their requests. ``final`` may change the result and summary as the end is written,
        when every write queued before it has been stored or has failed (it runs on the store's thread).
        """
        downstream = list(then)

        def op(conn: sa.Connection) -> list[BuildRequest]:
            end_result, end_summary = final(result, summary) if final is not None else (result, summary)
            build_id = build.get()
            sql.FINISH_BUILD.run(
                conn,
                {
                    "p_id": build_id,
                    "p_at": now,
                    "p_result": int(end_result),
                    "p_summary": end_summary,
                    "p_locks": locks_wait,
                    "p_properties": properties,
                    "p_revision": revision,
                },
            )
            if end_result == Result.RETRY:
                sql.UNCLAIM_REQUEST.run(conn, {"p_id": request.id})
            else:
                sql.COMPLETE_REQUEST.run(conn, {"p_id": request.id, "p_at": now, "p_result": int(end_result)})
                _complete_buildset(conn, request.buildset_id, now)
            requests = []
            for spec in downstream:
                requests += _insert_buildset(conn, spec, now)
            return requests

        return self._keep(op)

    def add_test_results(self, build: Ref, step: Ref, cases: Iterable[TestCase]) -> asyncio.Future[int]:
        """Record the test cases a step reported (see :mod:`flowbot.junit`); resolves to their count.

        A name or class name too long to index is cut, and ends in "…".
        """
        rows = [
            {
                "suite": case.suite,
                "classname": _indexable(case.classname),
                "name": _indexable(case.name),
                "outcome": str(case.outcome),
                "duration": case.duration,
                "message": case.message,
                "file": case.file or None,
                "line": case.line,
            }
            for case in cases
        ]

        def op(conn: sa.Connection) -> int:
            if rows:  # an empty list would insert one row of defaults
                ids = {"build_id": build.get(), "step_id": step.get()}
                conn.execute(t.test_results.insert(), [{**ids, **row} for row in rows])
            return len(rows)

        return self._keep(op)

    def add_artifacts(self, build: Ref, step: Ref, files: Iterable[dict[str, Any]], now: float) -> asyncio.Future[int]:
        """Record the files a step stored on the master: ``{"path", "size", "sha256", "mtime_ns"}`` each,
        the path relative to the artifacts directory; resolves to their count."""
        rows = list(files)

        def op(conn: sa.Connection) -> int:
            if rows:
                ids = {"build_id": build.get(), "step_id": step.get(), "stored_at": now}
                conn.execute(t.artifacts.insert(), [{**ids, **row} for row in rows])
            return len(rows)

        return self._keep(op)

    def set_build_properties(self, build: Ref, properties: dict[str, list[Any]]) -> asyncio.Future[None]:
        """Record a running build's properties (``{name: [value, source]}``) as they are now, so a
        master that takes the build up after a restart has them."""
        return self._keep(
            lambda conn: conn.execute(
                t.builds.update().where(t.builds.c.id == build.get()).values(properties=properties)
            )
        )

    async def unfinished_builds(self) -> list[UnfinishedBuild]:
        """The builds recorded as running (a master that stopped without recording their end), oldest first."""
        return await self._read(_unfinished_builds)

    async def retry_builds(self, build_ids: Iterable[int], now: float, summary: str = "master restarted") -> int:
        """End running builds (and their running steps) as RETRY and unclaim their requests, which
        are pending again; returns how many builds were running."""
        ids = list(build_ids)

        def op(conn: sa.Connection) -> int:
            running = conn.execute(
                sa.select(t.builds.c.id, t.builds.c.request_id).where(
                    t.builds.c.id.in_(ids), t.builds.c.finished_at.is_(None)
                )
            ).all()
            if not running:
                return 0
            ids_running = [row.id for row in running]
            conn.execute(
                t.steps.update()
                .where(t.steps.c.build_id.in_(ids_running), t.steps.c.finished_at.is_(None))
                .values(finished_at=now, result=int(Result.RETRY), summary=summary)
            )
            conn.execute(
                t.builds.update()
                .where(t.builds.c.id.in_(ids_running))
                .values(finished_at=now, result=int(Result.RETRY), summary=summary)
            )
            conn.execute(
                t.buildrequests.update()
                .where(
                    t.buildrequests.c.id.in_([row.request_id for row in running]),
                    t.buildrequests.c.complete_at.is_(None),
                )
                .values(claimed_at=None, claimed_by=None)
            )
            return len(running)

        return await self._keep(op)

    # -- workers ------------------------------------------------------------------------------

    async def worker_connected(self, name: str, info: dict[str, Any], now: float) -> None:
        values = {"info": info, "connected_at": now, "disconnected_at": None, "last_seen": now}
        await self._keep(lambda conn: _upsert_worker(conn, name, values))

    async def worker_paused(self, name: str, reason: str | None, now: float) -> None:
        """Record that ``name`` is paused (``reason`` a string, perhaps empty) or not (None)."""
        values = {"paused_at": None if reason is None else now, "paused_reason": reason}
        await self._submit(lambda conn: _upsert_worker(conn, name, values))

    async def worker_disconnected(self, name: str, now: float, last_seen: float) -> None:
        await self._keep(
            lambda conn: conn.execute(
                t.workers.update().where(t.workers.c.name == name).values(disconnected_at=now, last_seen=last_seen)
            )
        )

    async def workers_seen(self, seen: dict[str, float]) -> None:
        """Record when connected workers were last heard from (batched, every few seconds)."""
        if not seen:
            return
        # One statement for all of them (thousands of workers): compiled once, run as executemany.
        update = t.workers.update().where(t.workers.c.name == sa.bindparam("seen_name"))
        rows = [{"seen_name": name, "last_seen": when} for name, when in seen.items()]
        await self._keep(lambda conn: conn.execute(update, rows))

    # -- reads for people ---------------------------------------------------------------------

    async def builds(
        self,
        *,
        builder: str | None = None,
        result: Result | None = None,
        limit: int = 50,
        request_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """Builds newest first, with the time their request was submitted."""
        query = _select_builds().order_by(t.builds.c.id.desc()).limit(limit)
        if builder is not None:
            query = query.where(t.builds.c.builder == builder)
        if result is not None:
            query = query.where(t.builds.c.result == int(result))
        if request_id is not None:
            query = query.where(t.builds.c.request_id == request_id)
        return await self._read(lambda conn: [_build_dict(row) for row in conn.execute(query)])

    async def latest_builds(self) -> dict[str, dict[str, Any]]:
        """The newest build of each builder."""
        newest = sa.select(sa.func.max(t.builds.c.id)).group_by(t.builds.c.builder).scalar_subquery()
        query = _select_builds().where(t.builds.c.id.in_(newest))
        return await self._read(lambda conn: {row.builder: _build_dict(row) for row in conn.execute(query)})

    async def build(self, build_id: int) -> dict[str, Any]:
        """One build with its steps (and each step's log names)."""

        def fn(conn: sa.Connection) -> dict[str, Any]:
            row = conn.execute(_select_builds().where(t.builds.c.id == build_id)).first()
            if row is None:
                raise NotFound(f"no build {build_id}")
            build = _build_dict(row)
            steps = conn.execute(
                sa.select(t.steps).where(t.steps.c.build_id == build_id).order_by(t.steps.c.number)
            ).all()
            names: dict[int, list[str]] = {}
            if steps:
                chunks = t.log_chunks.c
                for step_id, name in conn.execute(
                    sa.select(chunks.step_id, chunks.log).distinct().where(chunks.step_id.in_([s.id for s in steps]))
                ):
                    names.setdefault(step_id, []).append(name)
            build["steps"] = [
                {
                    "number": s.number,
                    "name": s.name,
                    "result": _result_name(s.result),
                    "started_at": s.started_at,
                    "finished_at": s.finished_at,
                    "summary": s.summary,
                    "hidden": s.hidden,
                    "logs": sorted(names.get(s.id, [])),
                }
                for s in steps
            ]
            build["properties"] = (
                conn.execute(sa.select(t.builds.c.properties).where(t.builds.c.id == build_id)).scalar() or {}
            )
            return build

        return await self._read(fn)

    async def log_lines(
        self, build_id: int, step_number: int, name: str = "stdio", *, start: int = 0, chunks: int | None = None
    ) -> list[tuple[str, str]]:
        """A stored log as ``(stream, line)`` pairs: from line ``start`` (0 or where a page ended)
        to the end, or only ``chunks`` stored chunks of it (a page; the next starts at ``start + len(page)``)."""

        def fn(conn: sa.Connection) -> list[tuple[str, str]]:
            step_id = _step_id(conn, build_id, step_number)
            c = t.log_chunks.c
            lines: list[tuple[str, str]] = []
            for content, streams in conn.execute(
                sa.select(c.content, c.streams)
                .where(c.step_id == step_id, c.log == name, c.first_line >= start)
                .order_by(c.first_line)
                .limit(chunks)
            ):
                lines += zip(streams, content.split("\n"), strict=True)
            if not lines and not start and name != "stdio":  # every step has a stdio log, even an empty one
                raise NotFound(f"no log {name!r} for step {step_number} of build {build_id}")
            return lines

        return await self._read(fn)

    async def build_id(self, builder: str, number: int) -> int:
        """The id of ``builder``'s build ``number``.

        Raises:
            NotFound: it has no such build.
        """
        b = t.builds.c
        query = sa.select(b.id).where(b.builder == builder, b.number == number)
        found = await self._read(lambda conn: conn.execute(query).scalar())
        if found is None:
            raise NotFound(f"no build {builder}/{number}")
        return found

    async def buildrequests(
        self, *, pending: bool | None = None, limit: int = 200, request_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Requests oldest first when pending, newest first otherwise (or the one ``request_id``)."""
        r = t.buildrequests
        query = sa.select(r, t.buildsets.c.reason).join(t.buildsets, t.buildsets.c.id == r.c.buildset_id)
        if request_id is not None:
            query = query.where(r.c.id == request_id)
        if pending:
            query = query.where(r.c.complete_at.is_(None)).order_by(r.c.priority.desc(), r.c.id)
        else:
            if pending is False:
                query = query.where(r.c.complete_at.is_not(None))
            query = query.order_by(r.c.id.desc())
        query = query.limit(limit)

        def fn(conn: sa.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(query).all()
            stamps = _sourcestamps(conn, {row.buildset_id for row in rows})
            out = []
            for row in rows:
                first = (stamps.get(row.buildset_id) or (SourceStamp(),))[0]
                out.append(
                    {
                        "id": row.id,
                        "buildset_id": row.buildset_id,
                        "builder": row.builder,
                        "priority": row.priority,
                        "reason": row.reason,
                        "branch": first.branch,
                        "revision": first.revision,
                        "submitted_at": row.submitted_at,
                        "claimed_at": row.claimed_at,
                        "complete_at": row.complete_at,
                        "result": _result_name(row.result),
                    }
                )
            return out

        return await self._read(fn)

    async def workers(self) -> dict[str, dict[str, Any]]:
        """What the store remembers of each worker, by name."""

        def fn(conn: sa.Connection) -> dict[str, dict[str, Any]]:
            return {
                row.name: {
                    "info": row.info,
                    "connected_at": row.connected_at,
                    "disconnected_at": row.disconnected_at,
                    "last_seen": row.last_seen,
                    "paused_at": row.paused_at,
                    "paused_reason": row.paused_reason,
                }
                for row in conn.execute(sa.select(t.workers))
            }

        return await self._read(fn)

    # -- reads for the web page, the event stream and reporters -------------------------------

    async def changes(self, *, limit: int = 50, change_id: int | None = None) -> list[dict[str, Any]]:
        """Changes newest first (or the one ``change_id``), with the files each touched."""
        query = sa.select(t.changes).order_by(t.changes.c.id.desc()).limit(limit)
        if change_id is not None:
            query = query.where(t.changes.c.id == change_id)

        def fn(conn: sa.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(query).all()
            files: dict[int, list[str]] = {}
            if rows:
                f = t.change_files.c
                for change_id, path in conn.execute(
                    sa.select(f.change_id, f.path).where(f.change_id.in_([r.id for r in rows]))
                ):
                    files.setdefault(change_id, []).append(path)
            out = []
            for row in rows:
                change = row._asdict()
                change["when"] = change.pop("when_at")
                change["files"] = files.get(row.id, [])
                out.append(change)
            return out

        return await self._read(fn)

    async def recent_builds(self, per_builder: int) -> dict[str, list[dict[str, Any]]]:
        """The newest ``per_builder`` builds of every builder, newest first (one query)."""
        rank = sa.func.row_number().over(partition_by=t.builds.c.builder, order_by=t.builds.c.id.desc())
        ranked = sa.select(t.builds.c.id, rank.label("rank")).subquery()
        query = (
            _select_builds()
            .join(ranked, ranked.c.id == t.builds.c.id)
            .where(ranked.c.rank <= per_builder)
            .order_by(t.builds.c.id.desc())
        )

        def fn(conn: sa.Connection) -> dict[str, list[dict[str, Any]]]:
            out: dict[str, list[dict[str, Any]]] = {}
            for row in conn.execute(query):
                out.setdefault(row.builder, []).append(_build_dict(row))
            return out

        return await self._read(fn)

    async def builds_finished_after(
        self, when: float, *, after_id: int | None = None, builder: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The first ``limit`` builds that finished after ``when``, oldest first. For the next page,
        pass the last one's ``finished_at`` and its id as ``after_id`` (builds may end together)."""
        b = t.builds.c
        # One comparison of (finished_at, id), not an OR of two: it is a range of their index.
        later = b.finished_at > when if after_id is None else sa.tuple_(b.finished_at, b.id) > (when, after_id)
        query = _select_builds().where(later).order_by(b.finished_at, b.id).limit(limit)
        if builder is not None:
            query = query.where(b.builder == builder)
        return await self._read(lambda conn: [_build_dict(row) for row in conn.execute(query)])

    async def last_result(self, builder: str, *, before: int | None = None) -> Result | None:
        """The result of ``builder``'s newest finished build (older than build id ``before``), RETRY aside."""
        b = t.builds.c
        query = (
            sa.select(b.result)
            .where(b.builder == builder, b.result.is_not(None), b.result != int(Result.RETRY))
            .order_by(b.id.desc())
            .limit(1)
        )
        if before is not None:
            query = query.where(b.id < before)
        code = await self._read(lambda conn: conn.execute(query).scalar())
        return None if code is None else Result(code)

    async def buildset_of(self, build_id: int) -> tuple[dict[str, Any], BuildsetSpec]:
        """A build (as :meth:`builds` shows it) and the buildset it came from, for a rebuild."""

        def fn(conn: sa.Connection) -> tuple[dict[str, Any], BuildsetSpec]:
            row = conn.execute(
                _select_builds(t.buildrequests.c.buildset_id, t.buildrequests.c.priority).where(
                    t.builds.c.id == build_id
                )
            ).first()
            if row is None:
                raise NotFound(f"no build {build_id}")
            buildset = conn.execute(sa.select(t.buildsets).where(t.buildsets.c.id == row.buildset_id)).one()
            spec = BuildsetSpec(
                scheduler=buildset.scheduler,
                builders=(row.builder,),
                sourcestamps=_sourcestamps(conn, {row.buildset_id}).get(row.buildset_id, ()),
                reason=buildset.reason,
                properties=buildset.properties or {},
                priority=row.priority,
            )
            build = _build_dict(row)
            del build["buildset_id"], build["priority"]
            return build, spec

        return await self._read(fn)

    async def failed_tests(self, build_id: int, limit: int) -> list[TestCase]:
        """The tests of a build that failed or erred, in the order its steps reported them (``limit`` at most)."""
        from ..junit import Outcome, TestCase

        r = t.test_results.c
        query = (
            sa.select(r.suite, r.classname, r.name, r.outcome, r.duration, r.message, r.file, r.line)
            .where(r.build_id == build_id, r.outcome.in_([str(Outcome.FAILED), str(Outcome.ERROR)]))
            .order_by(r.id)
            .limit(limit)
        )

        def fn(conn: sa.Connection) -> list[TestCase]:
            return [
                TestCase(
                    row.suite,
                    row.classname,
                    row.name,
                    Outcome(row.outcome),
                    row.duration,
                    row.message,
                    row.file or "",
                    row.line,
                )
                for row in conn.execute(query)
            ]

        return await self._read(fn)

    async def builds_of_changes(self, change_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """The builds each change caused, oldest first (``{change id: [{id, builder, number, result}]}``)."""
        return await self._read(lambda conn: change_links.builds_of_changes(conn, change_ids))

    async def changes_of_build(self, build_id: int) -> list[dict[str, Any]]:
        """The changes that caused a build, oldest first."""
        return await self._read(lambda conn: change_links.changes_of_build(conn, build_id))

    async def test_results(
        self, build_id: int, *, outcomes: list[str] | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """A build's test results (of ``outcomes``, or all), failures first, each with its step's number and name."""
        return await self._read(lambda conn: test_pages.results(conn, build_id, outcomes, limit))

    async def artifacts(self, build_id: int, path: str | None = None) -> list[dict[str, Any]]:
        """The files a build stored on the master (the one at ``path`` only, when given), in the
        order stored, each with its step's number and name and, at ``newer``, whether a later
        build's row names the same file."""
        a, s = t.artifacts.c, t.steps.c
        later = t.artifacts.alias("later").c
        newer = sa.exists().where(later.path == a.path, later.id > a.id)
        query = (
            sa.select(
                a.path, a.size, a.sha256, a.mtime_ns, a.stored_at, s.number.label("step"),
                s.name.label("step_name"), newer.label("newer"),
            )
            .join(t.steps, s.id == a.step_id)
            .where(a.build_id == build_id)
            .order_by(a.id)
        )  # fmt: skip
        if path is not None:
            query = query.where(a.path == path)
        return await self._read(lambda conn: [row._asdict() for row in conn.execute(query)])

    async def test_counts(self, build_id: int) -> dict[str, int]:
        """How many of a build's tests ended each way (``{"failed": 3, "passed": 120}``)."""
        return await self._read(lambda conn: test_pages.counts(conn, build_id))

    async def log_tail(
        self, build_id: int, step_number: int, name: str = "stdio", lines: int = 200
    ) -> tuple[list[tuple[str, str]], int]:
        """The last ``lines`` lines of a stored log as ``(stream, line)`` pairs, and the number of the first.

        Only the chunks needed are read, however long the log.
        """

        def fn(conn: sa.Connection) -> tuple[list[tuple[str, str]], int]:
            step_id = _step_id(conn, build_id, step_number)
            chunks = t.log_chunks.c
            tail: list[tuple[str, str]] = []
            first, end = 0, 0
            found = False
            for first, content, streams in conn.execute(
                sa.select(chunks.first_line, chunks.content, chunks.streams)
                .where(chunks.step_id == step_id, chunks.log == name)
                .order_by(chunks.first_line.desc())
            ):
                if not found:
                    end = first + len(streams)
                found = True
                tail[:0] = zip(streams, content.split("\n"), strict=True)
                if len(tail) >= lines:
                    break
            if not found and name != "stdio":
                raise NotFound(f"no log {name!r} for step {step_number} of build {build_id}")
            kept = tail[-lines:] if lines else []
            return kept, end - len(kept)

        return await self._read(fn)

    async def log_page(
        self, build_id: int, step_number: int, name: str = "stdio", *, first: int | None = 0, count: int = 500
    ) -> LogPage:
        """``count`` lines of a stored log from line ``first`` (None: its last ``count``), and how many it has."""
        return await self._read(
            lambda conn: log_pages.page(conn, _step_id(conn, build_id, step_number), name, first, count)
        )

    async def log_error(self, build_id: int, step_number: int, name: str = "stdio", *, after: int = 0) -> int | None:
        """The number of the log's first line that reads as an error (from line ``after``), or None."""
        return await self._read(
            lambda conn: log_pages.first_match(
                conn, _step_id(conn, build_id, step_number), name, log_pages.ERROR_LINE, after
            )
        )


# -- helpers that run on the store's thread -------------------------------------------------------


def _store_error(exc: Exception, what: str) -> StoreError:
    """``exc`` from the database as the StoreError it means (StoreUnavailable when it may pass)."""
    if unavailable(exc):
        error: StoreError = StoreUnavailable(f"the database is unavailable ({describe(exc)})")
    else:
        error = StoreError(f"{what}: {getattr(exc, 'orig', None) or exc}")
    error.__cause__ = exc
    return error


def _probe(conn: sa.Connection) -> None:
    """Write what a log chunk weighs and take it back: whether the database takes writes again
    (a nearly full disk may take a small one, and a read proves nothing)."""
    key = {"owner": "flowbot.store", "key": "probe"}
    conn.execute(t.state.insert(), {**key, "value": os.urandom(LOG_CHUNK_BYTES // 2).hex()})
    conn.execute(t.state.delete().where(t.state.c.owner == key["owner"], t.state.c.key == key["key"]))


_BUILD_COLUMNS = (
    t.builds.c.id,
    t.builds.c.builder,
    t.builds.c.number,
    t.builds.c.worker,
    t.builds.c.result,
    t.builds.c.branch,
    t.builds.c.revision,
    t.builds.c.request_id,
    t.buildrequests.c.submitted_at,
    t.builds.c.started_at,
    t.builds.c.finished_at,
    t.builds.c.summary,
)


def _pending_requests(conn: sa.Connection, *where: sa.ColumnElement[bool]) -> list[BuildRequest]:
    """The requests not yet complete that match ``where``, oldest first."""
    from_changes = sa.exists().where(t.buildset_changes.c.buildset_id == t.buildrequests.c.buildset_id)
    rows = conn.execute(
        sa.select(
            t.buildrequests,
            t.buildsets.c.reason,
            t.buildsets.c.properties,
            t.buildsets.c.parent_build_id,
            from_changes.label("from_changes"),
        )
        .join(t.buildsets, t.buildsets.c.id == t.buildrequests.c.buildset_id)
        .where(t.buildrequests.c.complete_at.is_(None), *where)
        .order_by(t.buildrequests.c.id)
    ).all()
    stamps = _sourcestamps(conn, {row.buildset_id for row in rows})
    return [
        BuildRequest(
            id=row.id,
            buildset_id=row.buildset_id,
            builder=row.builder,
            sourcestamps=stamps.get(row.buildset_id, ()),
            reason=row.reason,
            properties={name: tuple(pair) for name, pair in (row.properties or {}).items()},
            priority=row.priority,
            submitted_at=row.submitted_at,
            from_changes=bool(row.from_changes),
            parent_build_id=row.parent_build_id,
        )
        for row in rows
    ]


def _unfinished_builds(conn: sa.Connection) -> list[UnfinishedBuild]:
    builds = conn.execute(
        sa.select(
            t.builds.c.id,
            t.builds.c.request_id,
            t.builds.c.number,
            t.builds.c.worker,
            t.builds.c.started_at,
            t.builds.c.locks_wait,
            t.builds.c.properties,
        )
        .where(t.builds.c.finished_at.is_(None))
        .order_by(t.builds.c.id)
    ).all()
    if not builds:
        return []
    ids = [b.id for b in builds]
    requests = {r.id: r for r in _pending_requests(conn, t.buildrequests.c.id.in_([b.request_id for b in builds]))}
    steps: dict[int, list[UnfinishedStep]] = {}
    for row in conn.execute(
        sa.select(t.steps.c.build_id, t.steps.c.id, t.steps.c.number, t.steps.c.name, t.steps.c.result)
        .where(t.steps.c.build_id.in_(ids))
        .order_by(t.steps.c.build_id, t.steps.c.number)
    ):
        result = None if row.result is None else Result(row.result)
        steps.setdefault(row.build_id, []).append(UnfinishedStep(row.id, row.number, row.name, result))
    running = [s.id for per_build in steps.values() for s in per_build if s.result is None]
    lines: dict[int, dict[str, int]] = {}
    for step_id, name, last in conn.execute(
        sa.select(t.log_chunks.c.step_id, t.log_chunks.c.log, sa.func.max(t.log_chunks.c.last_line))
        .where(t.log_chunks.c.step_id.in_(running))
        .group_by(t.log_chunks.c.step_id, t.log_chunks.c.log)
    ):
        lines.setdefault(step_id, {})[name] = last + 1
    return [
        UnfinishedBuild(
            id=b.id,
            request=requests.get(b.request_id),
            number=b.number,
            worker=b.worker,
            started_at=b.started_at,
            locks_wait=b.locks_wait,
            properties={name: (value, source) for name, (value, source) in (b.properties or {}).items()},
            steps=tuple(steps.get(b.id, ())),
            log_lines=next((lines.get(s.id, {}) for s in steps.get(b.id, ()) if s.result is None), {}),
        )
        for b in builds
    ]


def _select_builds(*extra: sa.ColumnElement[Any]) -> sa.Select:
    """Builds as people see them (with when their request was submitted), and ``extra`` columns."""
    return sa.select(*_BUILD_COLUMNS, *extra).join(t.buildrequests, t.buildrequests.c.id == t.builds.c.request_id)


def _indexable(text: str) -> str:
    """``text``, cut to :data:`~flowbot.store.schema.MAX_INDEXED_BYTES` (ending in "…") if it is longer."""
    data = text.encode()
    if len(data) <= t.MAX_INDEXED_BYTES:
        return text
    return data[: t.MAX_INDEXED_BYTES - len("…".encode())].decode("utf-8", "ignore") + "…"


def _result_name(code: int | None) -> str | None:
    return None if code is None else Result(code).name


def _build_dict(row: sa.Row) -> dict[str, Any]:
    build = row._asdict()
    build["result"] = _result_name(build["result"])
    return build


def _insert_buildset(conn: sa.Connection, spec: BuildsetSpec, now: float) -> list[BuildRequest]:
    buildset_id = sql.INSERT_BUILDSET.insert(
        conn,
        {
            "scheduler": spec.scheduler,
            "reason": spec.reason,
            "properties": spec.properties,
            "submitted_at": now,
            "parent_build_id": spec.parent_build_id,
        },
    )
    stamps = [
        {
            "buildset_id": buildset_id,
            "codebase": stamp.codebase,
            "repository": stamp.repository,
            "branch": stamp.branch,
            "revision": stamp.revision,
            "project": stamp.project,
        }
        for stamp in spec.sourcestamps
    ]
    if stamps:  # an empty list would insert one row of defaults
        sql.INSERT_SOURCESTAMP.run_many(conn, stamps)
    if spec.change_ids:
        sql.INSERT_BUILDSET_CHANGE.run_many(
            conn, [{"buildset_id": buildset_id, "change_id": c} for c in spec.change_ids]
        )
    requests = []
    for builder in spec.builders:
        request_id = sql.INSERT_REQUEST.insert(
            conn,
            {
                "buildset_id": buildset_id,
                "builder": builder,
                "priority": spec.priority,
                "submitted_at": now,
            },
        )
        requests.append(
            BuildRequest(
                id=request_id,
                buildset_id=buildset_id,
                builder=builder,
                sourcestamps=spec.sourcestamps,
                reason=spec.reason,
                properties=spec.properties,
                priority=spec.priority,
                submitted_at=now,
                from_changes=bool(spec.change_ids),
                parent_build_id=spec.parent_build_id,
            )
        )
    return requests


def _insert_change(conn: sa.Connection, change: Change, now: float) -> Change:
    change_id = sql.INSERT_CHANGE.insert(
        conn,
        {
            "repository": change.repository,
            "branch": change.branch,
            "revision": change.revision,
            "project": change.project,
            "codebase": change.codebase,
            "author": change.author,
            "committer": change.committer,
            "comments": change.comments,
            "category": change.category,
            "revlink": change.revlink,
            "when_at": change.when,
            "received_at": now,
            "properties": change.properties,
        },
    )
    if change.files:
        sql.INSERT_CHANGE_FILE.run_many(conn, [{"change_id": change_id, "path": path} for path in change.files])
    return dataclasses.replace(change, id=change_id)


def _release(conn: sa.Connection, decision: Release, now: float, new: list[Change]) -> list[BuildRequest]:
    """Take what the scheduler held under the decision's key, add ``new``, and build them."""
    key = {"p_scheduler": decision.scheduler, "p_key": decision.key}
    ids = [row[0] for row in sql.HELD_CHANGES.run(conn, key)] if decision.held else []
    if ids:
        sql.RELEASE_HELD.run(conn, key)
    spec = decision.make_buildset(_load_changes(conn, ids) + new)
    return _insert_buildset(conn, spec, now) if spec is not None else []


def _load_changes(conn: sa.Connection, ids: list[int]) -> list[Change]:
    if not ids:
        return []
    files: dict[int, list[str]] = {}
    for change_id, path in conn.execute(
        sa.select(t.change_files.c.change_id, t.change_files.c.path).where(t.change_files.c.change_id.in_(ids))
    ):
        files.setdefault(change_id, []).append(path)
    rows = conn.execute(sa.select(t.changes).where(t.changes.c.id.in_(ids)).order_by(t.changes.c.id))
    return [
        Change(
            id=row.id,
            repository=row.repository,
            branch=row.branch,
            revision=row.revision,
            project=row.project,
            codebase=row.codebase,
            author=row.author,
            committer=row.committer,
            comments=row.comments,
            category=row.category,
            revlink=row.revlink,
            when=row.when_at,
            properties=row.properties or {},
            files=tuple(files.get(row.id, ())),
        )
        for row in rows
    ]


def _set_state(conn: sa.Connection, owner: str, key: str, value: Any) -> None:
    _upsert(conn, t.state, {"owner": owner, "key": key}, {"value": value})


def _upsert_worker(conn: sa.Connection, name: str, values: dict[str, Any]) -> None:
    """Update the worker's row, making it if the worker was never seen (paused before it connected)."""
    _upsert(conn, t.workers, {"name": name}, values, info={})


def _upsert(conn: sa.Connection, table: sa.Table, key: dict[str, Any], values: dict[str, Any], **new: Any) -> None:
    """Update the row of ``table`` with ``key`` to ``values``; insert it (with ``new``) if there is none."""
    where = [table.c[column] == value for column, value in key.items()]
    if conn.execute(table.update().where(*where).values(**values)).rowcount == 0:
        conn.execute(table.insert(), {**key, **new, **values})


def _sourcestamps(conn: sa.Connection, buildset_ids: set[int]) -> dict[int, tuple[SourceStamp, ...]]:
    if not buildset_ids:
        return {}
    out: dict[int, list[SourceStamp]] = {}
    s = t.sourcestamps
    rows = conn.execute(sa.select(s).where(s.c.buildset_id.in_(buildset_ids)).order_by(s.c.id))
    for row in rows:
        out.setdefault(row.buildset_id, []).append(
            SourceStamp(
                codebase=row.codebase,
                repository=row.repository,
                branch=row.branch,
                revision=row.revision,
                project=row.project,
            )
        )
    return {key: tuple(value) for key, value in out.items()}


def _step_id(conn: sa.Connection, build_id: int, step_number: int) -> int:
    step_id = conn.execute(
        sa.select(t.steps.c.id).where(t.steps.c.build_id == build_id, t.steps.c.number == step_number)
    ).scalar()
    if step_id is None:
        raise NotFound(f"no step {step_number} in build {build_id}")
    return step_id


def _complete_buildset(conn: sa.Connection, buildset_id: int, now: float) -> None:
    """Complete a buildset once none of its requests is pending, with the worst of their results."""
    sql.COMPLETE_BUILDSET.run(conn, {"p_id": buildset_id, "p_at": now})
