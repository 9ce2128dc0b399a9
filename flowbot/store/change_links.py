"""Changes and the builds they caused, read both ways: a change's builds, a build's changes.

A change causes a buildset (``buildset_changes``), whose requests each get one build or more (a
retried request has several). These run on the store's thread with a connection it gives them.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..records import BuildLink
from ..results import Result
from . import schema as t

_links = t.buildset_changes.c
_requests = t.buildrequests.c
_builds = t.builds.c


def builds_of_changes(conn: sa.Connection, change_ids: list[int]) -> dict[int, list[BuildLink]]:
    """The builds each change caused, oldest first, by change id."""
    if not change_ids:
        return {}
    query = (
        sa.select(_links.change_id, _builds.id, _builds.builder, _builds.number, _builds.result)
        .join(t.buildrequests, _requests.buildset_id == _links.buildset_id)
        .join(t.builds, _builds.request_id == _requests.id)
        .where(_links.change_id.in_(change_ids))
        .order_by(_builds.id)
    )
    found: dict[int, list[BuildLink]] = {}
    for row in conn.execute(query):
        result = None if row.result is None else Result(row.result)
        found.setdefault(row.change_id, []).append(BuildLink(row.id, row.builder, row.number, result))
    return found


def changes_of_build(conn: sa.Connection, build_id: int) -> list[int]:
    """The ids of the changes that caused a build, oldest first."""
    query = (
        sa.select(_links.change_id)
        .join(t.buildrequests, _requests.buildset_id == _links.buildset_id)
        .join(t.builds, _builds.request_id == _requests.id)
        .where(_builds.id == build_id)
        .order_by(_links.change_id)
    )
    return list(conn.scalars(query))
