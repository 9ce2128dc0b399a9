"""A build whose request named no revision records the revision it checked out (its ``got_revision``):
builds stored before that get it from their stored properties, so their history has the revision
they built (reruns of one commit can then be compared).

``got_revision`` is one revision, or ``{codebase: revision}``; a build takes its first codebase's.

Revision ID: 0009_built_revisions
Revises: 0008_test_locations
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009_built_revisions"
down_revision = "0008_test_locations"
branch_labels = None
depends_on = None

#: Builds read and written at a time.
BATCH = 1000

_builds = sa.table(
    "builds",
    sa.column("id", sa.Integer),
    sa.column("request_id", sa.Integer),
    sa.column("revision", sa.Text),
    sa.column("properties", sa.JSON),
)
_requests = sa.table("buildrequests", sa.column("id", sa.Integer), sa.column("buildset_id", sa.Integer))
_stamps = sa.table(
    "sourcestamps", sa.column("id", sa.Integer), sa.column("buildset_id", sa.Integer), sa.column("codebase", sa.Text)
)


def built_revision(properties: Any, codebase: str | None) -> str | None:
    """The revision a build's stored properties say it checked out, for its first ``codebase``."""
    if not isinstance(properties, dict) or not isinstance(properties.get("got_revision"), list):
        return None
    got = properties["got_revision"][0]  # stored as [value, source]
    if isinstance(got, dict):
        got = got.get(codebase or "") if codebase is not None or len(got) != 1 else next(iter(got.values()))
    return got if isinstance(got, str) and got else None


def upgrade() -> None:
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(
            sa.select(_builds.c.id, _builds.c.properties, _requests.c.buildset_id)
            .join(_requests, _requests.c.id == _builds.c.request_id)
            .where(_builds.c.id > after, _builds.c.revision.is_(None), _builds.c.properties.is_not(None))
            .order_by(_builds.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        after = rows[-1].id
        first: dict[int, str] = {}
        for buildset_id, codebase in conn.execute(
            sa.select(_stamps.c.buildset_id, _stamps.c.codebase)
            .where(_stamps.c.buildset_id.in_({row.buildset_id for row in rows}))
            .order_by(_stamps.c.id.desc())
        ):
            first[buildset_id] = codebase  # the lowest id comes last and stays
        filled = [
            {"b_id": row.id, "b_revision": found}
            for row in rows
            if (found := built_revision(row.properties, first.get(row.buildset_id))) is not None
        ]
        if filled:
            conn.execute(
                _builds.update()
                .where(_builds.c.id == sa.bindparam("b_id"))
                .values(revision=sa.bindparam("b_revision")),
                filled,
            )


def downgrade() -> None:
    pass  # the revisions filled in are true; an older flowbot reads them as it reads any
