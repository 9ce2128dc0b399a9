"""Pull requests (and merge requests) that builds were for: closed, and read back for people with
the newest build of each builder. Buildsets are linked to theirs as they are stored
(:func:`~flowbot.store.requests.link_pull_request`), and builds to their buildset's.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..record_json import build_json
from . import schema as t
from .access import Access
from .builds import build_record, select_builds

_pr, _b = t.pull_requests.c, t.builds.c


class PullRequests:
    """The ``pull_requests`` table."""

    def __init__(self, db: Access):
        self._db = db

    async def close(self, repository: str, number: int, now: float) -> None:
        """Record that a pull request was closed (nothing for one the store never built)."""
        update = (
            sa.update(t.pull_requests)
            .where(_pr.repository == repository, _pr.number == number, _pr.closed_at.is_(None))
            .values(closed_at=now)
        )
        await self._db.submit(lambda conn: conn.execute(update))

    async def query(
        self, *, state: str | None = "open", limit: int = 50, pull_request_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Pull requests (``state`` "open", "closed", or None for all), the most recently changed
        first (or the one ``pull_request_id``), each with the newest build of each builder."""
        query = sa.select(t.pull_requests).order_by(_pr.updated_at.desc(), _pr.id.desc()).limit(limit)
        if pull_request_id is not None:
            query = query.where(_pr.id == pull_request_id)
        if state == "open":
            query = query.where(_pr.closed_at.is_(None))
        elif state == "closed":
            query = query.where(_pr.closed_at.is_not(None))

        def fn(conn: sa.Connection) -> list[dict[str, Any]]:
            found = [_described(row) for row in conn.execute(query)]
            newest = (
                sa.select(sa.func.max(_b.id))
                .where(_b.pull_request_id.in_([p["id"] for p in found]))
                .group_by(_b.pull_request_id, _b.builder)
            )
            builds: dict[int, list[dict[str, Any]]] = {}
            for row in conn.execute(select_builds(_b.pull_request_id).where(_b.id.in_(newest)).order_by(_b.builder)):
                builds.setdefault(row.pull_request_id, []).append(build_json(build_record(row)))
            return [{**p, "builds": builds.get(p["id"], [])} for p in found]

        return await self._db.read(fn)

    async def of_build(self, build_id: int) -> dict[str, Any] | None:
        """The pull request build ``build_id`` built, or None."""
        query = sa.select(t.pull_requests).join(t.builds, _b.pull_request_id == _pr.id).where(_b.id == build_id)

        def fn(conn: sa.Connection) -> dict[str, Any] | None:
            row = conn.execute(query).first()
            return _described(row) if row is not None else None

        return await self._db.read(fn)


def _described(row: sa.Row) -> dict[str, Any]:
    return {**row._asdict(), "state": "open" if row.closed_at is None else "closed"}
