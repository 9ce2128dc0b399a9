"""Changes: stored with what schedulers decided about them, held for timers, read back, and
linked to the builds they caused.

Schedulers decide before anything is written (see :mod:`flowbot.schedulers.held`): what is
written here is their decisions as records, so no scheduler code runs in a transaction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import InvalidRequest
from ..records import BuildLink, BuildRequest, Change, HeldChange, Hold, Release
from . import change_links
from . import schema as t
from . import statements as sql
from .access import Access
from .requests import insert_buildset, supersede
from .state import remember

if TYPE_CHECKING:
    from ..superseding import Superseding


class Changes:
    """The ``changes``, ``change_files`` and ``scheduler_changes`` tables."""

    def __init__(self, db: Access):
        self._db = db

    async def add(
        self,
        change: Change,
        decisions: Iterable[Hold | Release],
        now: float,
        owner: str = "",
        state: dict[str, Any] | None = None,
        superseding: Superseding | None = None,
    ) -> tuple[int, list[BuildRequest]]:
        """Store a change with what schedulers decided about it, in one transaction.

        ``Hold`` keeps the change for a scheduler's timer; ``Release`` lets go of what that
        scheduler held under the key and stores the buildset it made of them and the change,
        linked to the change. ``state`` is remembered for
        ``owner`` (the change source) in the same transaction, so a source never reports the
        change again, nor forgets it. The waiting requests that the new ones supersede, by
        ``superseding``, are completed in the same transaction too.

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
            remember(conn, owner, state or {})
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
                    requests += _release(conn, decision, now, stored, superseding)
            return stored.id, requests

        return await self._db.submit(op)

    async def release(
        self,
        decision: Release,
        now: float,
        owner: str = "",
        state: dict[str, Any] | None = None,
        superseding: Superseding | None = None,
    ) -> list[BuildRequest]:
        """Let go of what a scheduler held under a key (its timer fired) and store the buildset it
        made of them (completing the waiting requests it supersedes), and remember ``state`` for
        ``owner`` in the same transaction (waiting for an unavailable database: the timer fired)."""

        def op(conn: sa.Connection) -> list[BuildRequest]:
            requests = _release(conn, decision, now, None, superseding)
            remember(conn, owner, state or {})
            return requests

        return await self._db.keep(op)

    async def held(self) -> list[HeldChange]:
        """Every change a scheduler holds, oldest first (to take them up and re-arm timers)."""
        held = t.scheduler_changes.c

        def fn(conn: sa.Connection) -> list[HeldChange]:
            rows = conn.execute(
                sa.select(held.scheduler, held.timer, held.important, held.change_id, t.changes.c.received_at)
                .join(t.changes, t.changes.c.id == held.change_id)
                .order_by(held.change_id)
            ).all()
            changes = {change.id: change for change in _load_changes(conn, sorted({row.change_id for row in rows}))}
            return [
                HeldChange(row.scheduler, row.timer, row.important, row.received_at, changes[row.change_id])
                for row in rows
            ]

        return await self._db.read(fn)

    async def recent(self, *, limit: int = 50, change_id: int | None = None) -> list[Change]:
        """Changes newest first (or the one ``change_id``), with the files each touched."""
        query = sa.select(t.changes).order_by(t.changes.c.id.desc()).limit(limit)
        if change_id is not None:
            query = query.where(t.changes.c.id == change_id)

        def fn(conn: sa.Connection) -> list[Change]:
            rows = conn.execute(query).all()
            files = _files(conn, [r.id for r in rows])
            return [_change(row, files) for row in rows]

        return await self._db.read(fn)

    async def builds_of(self, change_ids: list[int]) -> dict[int, list[BuildLink]]:
        """The builds each change caused, oldest first, by change id (a change that caused none is left out)."""
        return await self._db.read(lambda conn: change_links.builds_of_changes(conn, change_ids))

    async def of_build(self, build_id: int) -> list[Change]:
        """The changes that caused a build, oldest first, with the files each touched."""
        return await self._db.read(lambda conn: _load_changes(conn, change_links.changes_of_build(conn, build_id)))


# -- helpers that run on the store's thread -------------------------------------------------------


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


def _release(
    conn: sa.Connection, decision: Release, now: float, new: Change | None, superseding: Superseding | None
) -> list[BuildRequest]:
    """Let go of the changes the decision releases and store its buildset, linked to ``new`` too,
    and complete the waiting requests its requests supersede."""
    if decision.changes:
        key = {"p_scheduler": decision.scheduler, "p_key": decision.key}
        sql.RELEASE_HELD.run_many(conn, [{**key, "p_change": change.id} for change in decision.changes])
    spec = decision.buildset
    if spec is None:
        return []
    if new is not None:
        spec = dataclasses.replace(spec, change_ids=(*spec.change_ids, new.id))
    requests = insert_buildset(conn, spec, now)
    return requests if superseding is None else supersede(conn, requests, superseding, now)


def _load_changes(conn: sa.Connection, ids: list[int]) -> list[Change]:
    if not ids:
        return []
    files = _files(conn, ids)
    rows = conn.execute(sa.select(t.changes).where(t.changes.c.id.in_(ids)).order_by(t.changes.c.id))
    return [_change(row, files) for row in rows]


def _files(conn: sa.Connection, ids: list[int]) -> dict[int, list[str]]:
    """The files each of the changes ``ids`` touched."""
    files: dict[int, list[str]] = {}
    if ids:
        f = t.change_files.c
        for change_id, path in conn.execute(sa.select(f.change_id, f.path).where(f.change_id.in_(ids))):
            files.setdefault(change_id, []).append(path)
    return files


def _change(row: sa.Row, files: dict[int, list[str]]) -> Change:
    return Change(
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
        received_at=row.received_at,
        properties=row.properties or {},
        files=tuple(files.get(row.id, ())),
    )
