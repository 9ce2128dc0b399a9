"""Changes and the builds they caused, read both ways: a change's builds, a build's changes.

A change causes a buildset (``buildset_changes``), whose requests each get one build or more (a
retried request has several). These run on the store's thread with a connection it gives them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..results import Result
from . import schema as t

_links = t.buildset_changes.c
_requests = t.buildrequests.c
_builds = t.builds.c


def builds_of_changes(conn: sa.Connection, change_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The builds each change caused, oldest first: ``{change id: [{id, builder, number, result}]}``."""
    if not change_ids:
        return {}
    query = (
        sa.select(_links.change_id, _builds.id, _builds.builder, _builds.number, _builds.result)
        .join(t.buildrequests, _requests.buildset_id == _links.buildset_id)
        .join(t.builds, _builds.request_id == _requests.id)
        .where(_links.change_id.in_(change_ids))
        .order_by(_builds.id)
    )
    found: dict[int, list[dict[str, Any]]] = {}
    for row in conn.execute(query):
        result = None if row.result is None else Result(row.result).name
        found.setdefault(row.change_id, []).append(
            {"id": row.id, "builder": row.builder, "number": row.number, "result": result}
        )
    return found


def changes_of_build(conn: sa.Connection, build_id: int) -> list[dict[str, Any]]:
    """The changes that caused a build, oldest first: ``[{id, revision, branch, author, comments, when}]``."""
    c = t.changes.c
    query = (
        sa.select(c.id, c.revision, c.branch, c.author, c.comments, c.when_at, c.revlink)
        .join(t.buildset_changes, _links.change_id == c.id)
        .join(t.buildrequests, _requests.buildset_id == _links.buildset_id)
        .join(t.builds, _builds.request_id == _requests.id)
        .where(_builds.id == build_id)
        .order_by(c.id)
    )
    return [
        {
            "id": row.id,
            "revision": row.revision,
            "branch": row.branch,
            "author": row.author,
            "comments": row.comments,
            "when": row.when_at,
            "revlink": row.revlink,
        }
        for row in conn.execute(query)
    ]
