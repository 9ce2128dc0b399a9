"""Buildsets and their build requests: stored, queued, cancelled, completed, listed.

A buildset is what a scheduler (or a person forcing, a build triggering) asked for: its
sourcestamps, reason and properties, and one request per builder (per cell, for a builder with a
matrix: see :mod:`.matrices`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import NotFound
from ..pull_requests import PullRequest
from ..records import BuildRequest, BuildsetSpec, SourceStamp
from ..results import Result
from . import schema as t
from . import statements as sql
from .access import Access
from .matrices import insert_matrix, with_cell

if TYPE_CHECKING:
    from ..superseding import Superseding


class Requests:
    """The ``buildsets``, ``sourcestamps`` and ``buildrequests`` tables."""

    def __init__(self, db: Access):
        self._db = db

    async def add_buildset(self, spec: BuildsetSpec, now: float, *, wait: float = 0.0) -> list[BuildRequest]:
        """Store a buildset and its requests (one per builder); ``wait``: seconds it may wait for a
        database that cannot take it (``math.inf`` for one a running build asks for)."""
        return await self._db.submit(lambda conn: insert_buildset(conn, spec, now), wait=wait)

    async def pending(self, *, unclaimed: bool = False) -> list[BuildRequest]:
        """Every request not yet complete (and, ``unclaimed``, that no build has taken), oldest first."""
        return await self._db.read(
            lambda conn: pending_requests(conn, t.buildrequests.c.claimed_at.is_(None) if unclaimed else sa.true())
        )

    async def cancel(self, request_id: int, now: float, result: Result = Result.CANCELLED) -> None:
        """Complete a pending request without building it: CANCELLED, or SKIPPED when it was
        collapsed into a newer one."""

        def op(conn: sa.Connection) -> None:
            done = sql.COMPLETE_REQUEST.run(conn, {"p_id": request_id, "p_at": now, "p_result": int(result)})
            if done.rowcount != 1:
                raise NotFound(f"no pending build request {request_id}")
            buildset_id = conn.execute(
                sa.select(t.buildrequests.c.buildset_id).where(t.buildrequests.c.id == request_id)
            ).scalar_one()
            complete_buildset(conn, buildset_id, now)

        await self._db.submit(op)

    async def query(
        self,
        *,
        pending: bool | None = None,
        limit: int = 200,
        offset: int = 0,
        builder: str | None = None,
        request_id: int | None = None,
    ) -> list[BuildRequest]:
        """Requests in the order they would run when pending, newest first otherwise (or the one
        ``request_id``), of ``builder`` or all: ``limit`` of them from the ``offset``-th (a page)."""
        r = t.buildrequests
        query = _select_requests()
        if request_id is not None:
            query = query.where(r.c.id == request_id)
        if builder is not None:
            query = query.where(r.c.builder == builder)
        if pending:
            query = query.where(r.c.complete_at.is_(None)).order_by(r.c.priority.desc(), r.c.id)
        else:
            if pending is False:
                query = query.where(r.c.complete_at.is_not(None))
            query = query.order_by(r.c.id.desc())
        query = query.limit(limit).offset(offset)

        def fn(conn: sa.Connection) -> list[BuildRequest]:
            return _requests(conn, conn.execute(query).all(), standing=True)

        return await self._db.read(fn)


# -- helpers that run on the store's thread -------------------------------------------------------


def pending_requests(conn: sa.Connection, *where: sa.ColumnElement[bool]) -> list[BuildRequest]:
    """The requests not yet complete that match ``where``, oldest first."""
    query = _select_requests().where(t.buildrequests.c.complete_at.is_(None), *where)
    return _requests(conn, conn.execute(query.order_by(t.buildrequests.c.id)).all(), standing=False)


def _select_requests() -> sa.Select:
    """Requests with what their buildset says of them (a query's rows for :func:`_requests`)."""
    from_changes = sa.exists().where(t.buildset_changes.c.buildset_id == t.buildrequests.c.buildset_id)
    return sa.select(
        t.buildrequests,
        t.buildsets.c.reason,
        t.buildsets.c.properties,
        t.buildsets.c.parent_build_id,
        from_changes.label("from_changes"),
    ).join(t.buildsets, t.buildsets.c.id == t.buildrequests.c.buildset_id)


def _requests(conn: sa.Connection, rows: list[sa.Row], *, standing: bool) -> list[BuildRequest]:
    """The rows of a :func:`_select_requests` query as records, with their sources and, ``standing``,
    where each stands (claimed, completed, with what): what people read, not what the queue keeps."""
    stamps = sourcestamps(conn, {row.buildset_id for row in rows})
    requests = [
        BuildRequest(
            id=row.id,
            buildset_id=row.buildset_id,
            builder=row.builder,
            sourcestamps=stamps.get(row.buildset_id, ()),
            reason=row.reason,
            properties=with_cell({name: tuple(pair) for name, pair in (row.properties or {}).items()}, row.cell),
            priority=row.priority,
            submitted_at=row.submitted_at,
            from_changes=bool(row.from_changes),
            parent_build_id=row.parent_build_id,
            matrix_id=row.matrix_id,
            cell=row.cell,
        )
        for row in rows
    ]
    if not standing:
        return requests
    return [
        dataclasses.replace(
            request,
            claimed_at=row.claimed_at,
            complete_at=row.complete_at,
            result=None if row.result is None else Result(row.result),
            summary=row.summary,
        )
        for request, row in zip(requests, rows, strict=True)
    ]


def insert_buildset(conn: sa.Connection, spec: BuildsetSpec, now: float) -> list[BuildRequest]:
    buildset_id = sql.INSERT_BUILDSET.insert(
        conn,
        {
            "scheduler": spec.scheduler,
            "reason": spec.reason,
            "properties": spec.properties,
            "submitted_at": now,
            "parent_build_id": spec.parent_build_id,
            "pull_request_id": link_pull_request(conn, spec, now),
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
        matrix_id, cells = insert_matrix(conn, buildset_id, builder, spec.cells.get(builder), now)
        for cell in cells:
            request_id = sql.INSERT_REQUEST.insert(
                conn,
                {
                    "buildset_id": buildset_id,
                    "builder": builder,
                    "priority": spec.priority,
                    "submitted_at": now,
                    "matrix_id": matrix_id,
                    "cell": cell,
                },
            )
            requests.append(
                BuildRequest(
                    id=request_id,
                    buildset_id=buildset_id,
                    builder=builder,
                    sourcestamps=spec.sourcestamps,
                    reason=spec.reason,
                    properties=with_cell(spec.properties, cell),
                    priority=spec.priority,
                    submitted_at=now,
                    from_changes=bool(spec.change_ids),
                    parent_build_id=spec.parent_build_id,
                    matrix_id=matrix_id,
                    cell=cell,
                )
            )
    return requests


def sourcestamps(conn: sa.Connection, buildset_ids: set[int]) -> dict[int, tuple[SourceStamp, ...]]:
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


def complete_buildset(conn: sa.Connection, buildset_id: int, now: float) -> None:
    """Complete a buildset once none of its requests is pending, with the worst of their results."""
    sql.COMPLETE_BUILDSET.run(conn, {"p_id": buildset_id, "p_at": now})


#: The columns of a pull request that its changes describe.
_DESCRIBED = ("title", "url", "base_branch", "head_branch", "head_repository", "author", "fork")


def link_pull_request(conn: sa.Connection, spec: BuildsetSpec, now: float) -> int | None:
    """The id of the pull request ``spec`` builds (None if none), stored or brought up to date.

    A buildset made from changes says what the pull request is now (and that it is open); any
    other (a rebuild, say) only adds a pull request the store does not know yet.
    """
    request = PullRequest.of_sources(spec.sourcestamps, {name: pair[0] for name, pair in spec.properties.items()})
    if request is None or len(request.repository.encode()) > t.MAX_INDEXED_BYTES:
        return None
    pr = t.pull_requests.c
    described = {column: _plain(getattr(request, column), column) for column in _DESCRIBED}
    found = conn.execute(
        sa.select(pr.id).where(pr.repository == request.repository, pr.number == request.number)
    ).scalar()
    if found is None:
        values = {"repository": request.repository, "number": request.number, "updated_at": now, **described}
        return conn.execute(sa.insert(t.pull_requests).values(values).returning(pr.id)).scalar_one()
    if spec.change_ids:
        conn.execute(
            sa.update(t.pull_requests).where(pr.id == found).values(updated_at=now, closed_at=None, **described)
        )
    return found


def _plain(value: Any, column: str) -> Any:
    """A value of a change's property as its column takes it (a bool for ``fork``, else text)."""
    if column == "fork":
        return bool(value)
    return value if isinstance(value, str) else str(value)


def supersede(
    conn: sa.Connection, requests: list[BuildRequest], superseding: Superseding, now: float
) -> list[BuildRequest]:
    """Complete, CANCELLED, the waiting requests that the new ``requests`` supersede (see
    :mod:`flowbot.superseding`); the new requests come back saying which
    (:attr:`~flowbot.records.BuildRequest.superseded`).

    Only the pending requests of the same builder and pull request (or of no pull request, for
    branches) are read. Those claimed by a build are left to the master, which stops the build.
    """
    br, bs = t.buildrequests.c, t.buildsets.c
    out = []
    for new in requests:
        reason = superseding.reason(new)
        if reason is None:
            out.append(new)
            continue
        same = sa.select(bs.pull_request_id).where(bs.id == new.buildset_id).scalar_subquery()
        candidates = pending_requests(
            conn,
            br.builder == new.builder,
            br.claimed_at.is_(None),
            br.id < new.id,
            bs.parent_build_id.is_(None),
            sa.or_(bs.pull_request_id == same, sa.and_(bs.pull_request_id.is_(None), same.is_(None))),
        )
        old = [r for r in candidates if superseding.supersedes(new, r)]
        if old:
            conn.execute(
                sa.update(t.buildrequests)
                .where(br.id.in_([r.id for r in old]), br.complete_at.is_(None), br.claimed_at.is_(None))
                .values(complete_at=now, result=int(Result.CANCELLED), summary=reason)
            )
            for buildset_id in sorted({r.buildset_id for r in old}):
                complete_buildset(conn, buildset_id, now)
        out.append(dataclasses.replace(new, superseded=tuple(r.id for r in old)))
    return out
