"""Builds know the pull request they built, and a request that ended without a build says why.

``pull_requests`` holds one row per pull request (or merge request) of a repository, as its newest
change described it, and when it was closed; buildsets and builds link to it (builds keep a copy
of their buildset's link, so the history reads builds alone). The links are plain indexed
columns, as ``parent_build_id`` is: a foreign key would keep SQLite from dropping them in place.
``buildrequests.summary`` says why a request completed without a build ("superseded by
<revision>"). Buildsets stored before are linked from the pull-request properties their changes
gave them.

Revision ID: 0011_pull_requests
Revises: 0010_artifacts
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011_pull_requests"
down_revision = "0010_artifacts"
branch_labels = None
depends_on = None

#: Buildsets read at a time.
BATCH = 1000

_buildsets = sa.table(
    "buildsets",
    sa.column("id", sa.Integer),
    sa.column("properties", sa.JSON),
    sa.column("submitted_at", sa.Float),
    sa.column("pull_request_id", sa.Integer),
)
_stamps = sa.table("sourcestamps", sa.column("buildset_id", sa.Integer), sa.column("repository", sa.Text))
_pull_requests = sa.table(
    "pull_requests",
    sa.column("id", sa.Integer),
    sa.column("repository", sa.Text),
    sa.column("number", sa.Integer),
    sa.column("title", sa.Text),
    sa.column("url", sa.Text),
    sa.column("base_branch", sa.Text),
    sa.column("head_branch", sa.Text),
    sa.column("head_repository", sa.Text),
    sa.column("author", sa.Text),
    sa.column("fork", sa.Boolean),
    sa.column("updated_at", sa.Float),
)
#: The buildset properties that describe a pull request, and the column each fills.
_FIELDS = {
    "pr_title": "title",
    "pr_url": "url",
    "pr_base_branch": "base_branch",
    "pr_head_branch": "head_branch",
    "pr_head_repository": "head_repository",
    "pr_author": "author",
    "pr_fork": "fork",
}


def upgrade() -> None:
    op.create_table(
        "pull_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository", sa.Text(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("base_branch", sa.Text(), nullable=False),
        sa.Column("head_branch", sa.Text(), nullable=False),
        sa.Column("head_repository", sa.Text(), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("fork", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("closed_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pull_requests")),
        sa.UniqueConstraint("repository", "number", name=op.f("uq_pull_requests_repository_number")),
    )
    for table in ("buildsets", "builds"):
        op.add_column(table, sa.Column("pull_request_id", sa.Integer(), nullable=True))
        op.create_index(op.f(f"ix_{table}_pull_request_id"), table, ["pull_request_id"])
    op.add_column("buildrequests", sa.Column("summary", sa.Text(), nullable=True))
    _link_stored_buildsets(op.get_bind())


def _link_stored_buildsets(conn: sa.Connection) -> None:
    """Link the buildsets whose properties name a pull request to it, and their builds too."""
    known: dict[tuple[str, int], int] = {}
    after = 0
    mentions = sa.cast(_buildsets.c.properties, sa.Text).like('%"pr_number"%')
    while True:
        rows = conn.execute(
            sa.select(_buildsets.c.id, _buildsets.c.properties, _buildsets.c.submitted_at)
            .where(_buildsets.c.id > after, mentions)
            .order_by(_buildsets.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        after = rows[-1].id
        repositories = dict(
            conn.execute(
                sa.select(_stamps.c.buildset_id, sa.func.min(_stamps.c.repository))
                .where(_stamps.c.buildset_id.in_([row.id for row in rows]))
                .group_by(_stamps.c.buildset_id)
            ).all()
        )
        for row in rows:
            values = {name: pair[0] for name, pair in (row.properties or {}).items() if isinstance(pair, list) and pair}
            number, repository = values.get("pr_number"), repositories.get(row.id)
            if not isinstance(number, int) or isinstance(number, bool) or not repository:
                continue
            if (repository, number) not in known:
                known[(repository, number)] = _insert(conn, repository, number, values, row.submitted_at)
            conn.execute(
                sa.update(_buildsets)
                .where(_buildsets.c.id == row.id)
                .values(pull_request_id=known[(repository, number)])
            )
    op.execute(
        "UPDATE builds SET pull_request_id = (SELECT buildsets.pull_request_id FROM buildrequests"
        " JOIN buildsets ON buildsets.id = buildrequests.buildset_id WHERE buildrequests.id = builds.request_id)"
        " WHERE builds.request_id IN (SELECT buildrequests.id FROM buildrequests JOIN buildsets"
        " ON buildsets.id = buildrequests.buildset_id WHERE buildsets.pull_request_id IS NOT NULL)"
    )


def _insert(conn: sa.Connection, repository: str, number: int, values: dict[str, Any], at: float) -> int:
    fields = {column: values.get(name, False if column == "fork" else "") for name, column in _FIELDS.items()}
    fields = {column: value if isinstance(value, (str, bool)) else str(value) for column, value in fields.items()}
    return conn.execute(
        sa.insert(_pull_requests)
        .values(repository=repository, number=number, updated_at=at, **fields)
        .returning(_pull_requests.c.id)
    ).scalar_one()


def downgrade() -> None:
    # SQLite drops a column in place (a batch copy of builds would cascade to their steps and logs)
    for table in ("builds", "buildsets"):
        op.drop_index(op.f(f"ix_{table}_pull_request_id"), table)
        op.execute(f"ALTER TABLE {table} DROP COLUMN pull_request_id")
    op.execute("ALTER TABLE buildrequests DROP COLUMN summary")
    op.drop_table("pull_requests")
