"""Builds: claimed from their requests, ended, taken up again after a restart, and read back."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from ..errors import NotFound
from ..records import Build, BuildRequest, BuildsetSpec, UnfinishedBuild, UnfinishedStep
from ..results import Result
from . import schema as t
from . import statements as sql
from .access import Access, Ref
from .matrices import matrix_passed
from .requests import complete_buildset, insert_buildset, pending_requests, sourcestamps
from .steps import StepEnd, StepStart, steps_of


class Builds:
    """The ``builds`` table (and, for a build's page, its steps)."""

    def __init__(self, db: Access):
        self._db = db

    # -- writes -----------------------------------------------------------------------------------

    async def next_numbers(self) -> dict[str, int]:
        """The number the next build of each builder gets."""

        def fn(conn: sa.Connection) -> dict[str, int]:
            rows = conn.execute(
                sa.select(t.builds.c.builder, sa.func.max(t.builds.c.number)).group_by(t.builds.c.builder)
            )
            return {builder: number + 1 for builder, number in rows}

        return await self._db.read(fn)

    def start(
        self,
        request: BuildRequest,
        number: int,
        worker: str,
        now: float,
        master: str,
        build: Ref,
        attempt: int = 1,
        *,
        properties: dict[str, list[Any]] | None = None,
        first_step: StepStart | None = None,
    ) -> asyncio.Future[None]:
        """Claim ``request`` and record its build as started (its ``attempt``-th), with the
        ``properties`` it starts with (``{name: [value, source]}``) and the start of its
        ``first_step``, in one write; sets ``build.id`` (and the step's).

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
                if first_step is not None:
                    first_step.ref.id = step_id(conn, build.id, first_step.number)
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
                    "p_request": request.id,
                    "attempt": attempt,
                    "properties": sa.null() if properties is None else properties,
                },
            )
            if first_step is not None:
                first_step.write(conn, build.id)

        return self._db.keep(op)

    def finish(
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
        last_step: StepEnd | None = None,
    ) -> asyncio.Future[list[BuildRequest]]:
        """Record a build's end with its properties (``{name: [value, source]}``; None: as they
        were last stored) and the revision it built (``got_revision``, for a build whose request
        named none).

        A RETRY puts its request back in the queue; anything else completes it. Buildsets in
        ``then`` (builds that depend on this one) are stored in the same transaction (for a matrix
        cell, only once every cell of its matrix has passed: by the last one); the future
        gives their requests. ``final`` may change the result and summary as the end is written,
        when every write queued before it has been stored or has failed (it runs on the store's thread).
        The end of its ``last_step`` goes in the same write (unless that step's start was not stored).
        """
        downstream = list(then)

        def op(conn: sa.Connection) -> list[BuildRequest]:
            if last_step is not None and last_step.ref.id is not None:
                last_step.write(conn)
            end_result, end_summary = final(result, summary) if final is not None else (result, summary)
            build_id = build.get()
            values = {
                "p_id": build_id,
                "p_at": now,
                "p_result": int(end_result),
                "p_summary": end_summary,
                "p_locks": locks_wait,
                "p_revision": revision,
            }
            if properties is None:
                sql.FINISH_BUILD.run(conn, values)
            else:
                sql.FINISH_BUILD_WITH_PROPERTIES.run(conn, {**values, "p_properties": properties})
            if end_result == Result.RETRY:
                sql.UNCLAIM_REQUEST.run(conn, {"p_id": request.id})
            else:
                sql.COMPLETE_REQUEST.run(conn, {"p_id": request.id, "p_at": now, "p_result": int(end_result)})
                complete_buildset(conn, request.buildset_id, now)
            requests = []
            if request.matrix_id is None or matrix_passed(conn, request.matrix_id):  # a matrix: once, as a whole
                for spec in downstream:
                    requests += insert_buildset(conn, spec, now)
            return requests

        return self._db.keep(op)

    def set_properties(self, build: Ref, properties: dict[str, list[Any]]) -> asyncio.Future[None]:
        """Record a running build's properties (``{name: [value, source]}``) as they are now, so a
        master that takes the build up after a restart has them."""
        return self._db.keep(
            lambda conn: sql.SET_BUILD_PROPERTIES.run(conn, {"p_id": build.get(), "p_properties": properties})
        )

    def moved(self, build: Ref, worker: str) -> asyncio.Future[None]:
        """Record that a running build goes on on ``worker`` (it let its worker go, and took another)."""
        return self._db.keep(
            lambda conn: conn.execute(t.builds.update().where(t.builds.c.id == build.get()).values(worker=worker))
        )

    # -- recovery ---------------------------------------------------------------------------------

    async def unfinished(self) -> list[UnfinishedBuild]:
        """The builds recorded as running (a master that stopped without recording their end), oldest first."""
        return await self._db.read(_unfinished_builds)

    async def retry(self, build_ids: Iterable[int], now: float, summary: str = "master restarted") -> int:
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

        return await self._db.keep(op)

    # -- reads for people -------------------------------------------------------------------------

    async def query(
        self,
        *,
        builder: str | None = None,
        result: Result | None = None,
        limit: int = 50,
        request_id: int | None = None,
    ) -> list[Build]:
        """Builds newest first, with the time their request was submitted."""
        query = select_builds().order_by(t.builds.c.id.desc()).limit(limit)
        if builder is not None:
            query = query.where(t.builds.c.builder == builder)
        if result is not None:
            query = query.where(t.builds.c.result == int(result))
        if request_id is not None:
            query = query.where(t.builds.c.request_id == request_id)
        return await self._db.read(lambda conn: [build_record(row) for row in conn.execute(query)])

    async def latest(self, builders: Iterable[str]) -> dict[str, Build]:
        """The newest build of each of ``builders`` that has one."""
        return {name: builds[0] for name, builds in (await self.recent(builders, 1)).items()}

    async def get(self, build_id: int) -> Build:
        """One build with its steps (and each step's log names) and properties."""

        def fn(conn: sa.Connection) -> Build:
            row = conn.execute(select_builds(t.builds.c.properties).where(t.builds.c.id == build_id)).first()
            if row is None:
                raise NotFound(f"no build {build_id}")
            return dataclasses.replace(
                build_record(row), steps=steps_of(conn, build_id), properties=stored_properties(row.properties)
            )

        return await self._db.read(fn)

    async def id_of(self, builder: str, number: int) -> int:
        """The id of ``builder``'s build ``number``.

        Raises:
            NotFound: it has no such build.
        """
        b = t.builds.c
        query = sa.select(b.id).where(b.builder == builder, b.number == number)
        found = await self._db.read(lambda conn: conn.execute(query).scalar())
        if found is None:
            raise NotFound(f"no build {builder}/{number}")
        return found

    async def recent(self, builders: Iterable[str], per_builder: int) -> dict[str, list[Build]]:
        """The newest ``per_builder`` builds of each of ``builders``, newest first (those with builds).

        Each builder's are a range of the (builder, number) index, read backwards: however long the
        history, a read costs what it returns.
        """
        names = list(builders)
        b = t.builds.c
        query = select_builds().where(b.builder == sa.bindparam("name")).order_by(b.number.desc()).limit(per_builder)

        def fn(conn: sa.Connection) -> dict[str, list[Build]]:
            found = {name: [build_record(row) for row in conn.execute(query, {"name": name})] for name in names}
            return {name: builds for name, builds in found.items() if builds}

        return await self._db.read(fn)

    async def finished_after(
        self, when: float, *, after_id: int | None = None, builder: str | None = None, limit: int = 1000
    ) -> list[Build]:
        """The first ``limit`` builds that finished after ``when``, oldest first. For the next page,
        pass the last one's ``finished_at`` and its id as ``after_id`` (builds may end together)."""
        b = t.builds.c
        # One comparison of (finished_at, id), not an OR of two: it is a range of their index.
        later = b.finished_at > when if after_id is None else sa.tuple_(b.finished_at, b.id) > (when, after_id)
        query = select_builds().where(later).order_by(b.finished_at, b.id).limit(limit)
        if builder is not None:
            query = query.where(b.builder == builder)
        return await self._db.read(lambda conn: [build_record(row) for row in conn.execute(query)])

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
        code = await self._db.read(lambda conn: conn.execute(query).scalar())
        return None if code is None else Result(code)

    async def buildset_of(self, build_id: int) -> tuple[Build, BuildsetSpec]:
        """A build (as :meth:`query` shows it) and the buildset it came from, for a rebuild."""

        def fn(conn: sa.Connection) -> tuple[Build, BuildsetSpec]:
            row = conn.execute(
                select_builds(t.buildrequests.c.buildset_id, t.buildrequests.c.priority, t.buildrequests.c.cell).where(
                    t.builds.c.id == build_id
                )
            ).first()
            if row is None:
                raise NotFound(f"no build {build_id}")
            buildset = conn.execute(sa.select(t.buildsets).where(t.buildsets.c.id == row.buildset_id)).one()
            spec = BuildsetSpec(
                scheduler=buildset.scheduler,
                builders=(row.builder,),
                sourcestamps=sourcestamps(conn, {row.buildset_id}).get(row.buildset_id, ()),
                reason=buildset.reason,
                properties=buildset.properties or {},
                priority=row.priority,
                cells={row.builder: (row.cell,)} if row.cell else {},  # a cell's rebuild repeats that cell
            )
            return build_record(row), spec

        return await self._db.read(fn)


# -- helpers that run on the store's thread -------------------------------------------------------

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
    t.builds.c.attempt,
)


def select_builds(*extra: sa.ColumnElement[Any]) -> sa.Select:
    """Builds as people see them (with when their request was submitted), and ``extra`` columns."""
    return sa.select(*_BUILD_COLUMNS, *extra).join(t.buildrequests, t.buildrequests.c.id == t.builds.c.request_id)


def build_record(row: sa.Row) -> Build:
    """A build from a row of :func:`select_builds`."""
    return Build(
        id=row.id,
        builder=row.builder,
        number=row.number,
        worker=row.worker,
        started_at=row.started_at,
        finished_at=row.finished_at,
        result=None if row.result is None else Result(row.result),
        branch=row.branch,
        revision=row.revision,
        request_id=row.request_id,
        submitted_at=row.submitted_at,
        summary=row.summary,
        attempt=row.attempt,
    )


def stored_properties(stored: dict[str, list[Any]] | None) -> dict[str, tuple[Any, str]]:
    """A build's properties as stored (``{name: [value, source]}``), as its record has them."""
    return {name: (value, source) for name, (value, source) in (stored or {}).items()}


def step_id(conn: sa.Connection, build_id: int, step_number: int) -> int:
    found = conn.execute(
        sa.select(t.steps.c.id).where(t.steps.c.build_id == build_id, t.steps.c.number == step_number)
    ).scalar()
    if found is None:
        raise NotFound(f"no step {step_number} in build {build_id}")
    return found


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
    requests = {r.id: r for r in pending_requests(conn, t.buildrequests.c.id.in_([b.request_id for b in builds]))}
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
    for step, name, last in conn.execute(
        sa.select(t.log_chunks.c.step_id, t.log_chunks.c.log, sa.func.max(t.log_chunks.c.last_line))
        .where(t.log_chunks.c.step_id.in_(running))
        .group_by(t.log_chunks.c.step_id, t.log_chunks.c.log)
    ):
        lines.setdefault(step, {})[name] = last + 1
    return [
        UnfinishedBuild(
            id=b.id,
            request=requests.get(b.request_id),
            number=b.number,
            worker=b.worker,
            started_at=b.started_at,
            locks_wait=b.locks_wait,
            properties=stored_properties(b.properties),
            steps=tuple(steps.get(b.id, ())),
            log_lines=next((lines.get(s.id, {}) for s in steps.get(b.id, ()) if s.result is None), {}),
        )
        for b in builds
    ]
