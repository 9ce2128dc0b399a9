"""Pull requests (and merge requests) that builds were for: closed, and read back for people with
the newest build of each builder. Buildsets are linked to theirs as they are stored
(:func:`~flowbot.store.requests.link_pull_request`), and builds to their buildset's.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from ..pull_requests import PullRequest
from ..records import Build, StoredPullRequest
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
    ) -> list[StoredPullRequest]:
        """Pull requests (``state`` "open", "closed", or None for all), the most recently changed
        first (or the one ``pull_request_id``), each with the newest build of each builder."""
        query = sa.select(t.pull_requests).order_by(_pr.updated_at.desc(), _pr.id.desc()).limit(limit)
        if pull_request_id is not None:
            query = query.where(_pr.id == pull_request_id)
        if state == "open":
            query = query.where(_pr.closed_at.is_(None))
        elif state == "closed":
            query = query.where(_pr.closed_at.is_not(None))

        def fn(conn: sa.Connection) -> list[StoredPullRequest]:
            found = [_stored(row) for row in conn.execute(query)]
            newest = (
                sa.select(sa.func.max(_b.id))
                .where(_b.pull_request_id.in_([p.id for p in found]))
                .group_by(_b.pull_request_id, _b.builder)
            )
            builds: dict[int, list[Build]] = {}
            for row in conn.execute(select_builds(_b.pull_request_id).where(_b.id.in_(newest)).order_by(_b.builder)):
                builds.setdefault(row.pull_request_id, []).append(build_record(row))
            return [dataclasses.replace(p, builds=tuple(builds.get(p.id, ()))) for p in found]

        return await self._db.read(fn)

    async def of_build(self, build_id: int) -> StoredPullRequest | None:
        """The pull request build ``build_id`` built (without its builds), or None."""
        query = sa.select(t.pull_requests).join(t.builds, _b.pull_request_id == _pr.id).where(_b.id == build_id)

        def fn(conn: sa.Connection) -> StoredPullRequest | None:
            row = conn.execute(query).first()
            return _stored(row) if row is not None else None

        return await self._db.read(fn)


def _stored(row: sa.Row) -> StoredPullRequest:
    pull_request = PullRequest(
        repository=row.repository,
        number=row.number,
        title=row.title,
        url=row.url,
        base_branch=row.base_branch,
        head_branch=row.head_branch,
        head_repository=row.head_repository,
        author=row.author,
        fork=row.fork,
    )
    return StoredPullRequest(row.id, pull_request, updated_at=row.updated_at, closed_at=row.closed_at)
