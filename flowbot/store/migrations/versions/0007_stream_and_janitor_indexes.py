"""Indexes for the event stream's resume from the store, and for the janitor's purge of old requests.

A client resuming the event stream from far back reads the builds that finished since, a page at a
time in ``(finished_at, id)`` order, of every builder or of one: without an index each page sorted
the builds table, or all of that builder's. The janitor deletes one builder's old requests at a time,
oldest first, through ``(builder, complete_at)``. The index of every request by ``(complete_at,
builder)`` gives way to one of the pending requests alone, the only ones read by ``complete_at``: with
it there, PostgreSQL's planner could take a purge through the old requests of every builder, those
a longer limit keeps included, to reach the few of one builder.

Revision ID: 0007_stream_and_janitor_indexes
Revises: 0006_build_submitted_at
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_stream_and_janitor_indexes"
down_revision = "0006_build_submitted_at"
branch_labels = None
depends_on = None

_PENDING = sa.text("complete_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.create_index(batch.f("ix_builds_finished_at_id"), ["finished_at", "id"], unique=False)
        batch.create_index(batch.f("ix_builds_builder_finished_at_id"), ["builder", "finished_at", "id"], unique=False)
    with op.batch_alter_table("buildrequests") as batch:
        batch.drop_index(batch.f("ix_buildrequests_complete_at_builder"))
        batch.create_index(batch.f("ix_buildrequests_builder_complete_at"), ["builder", "complete_at"], unique=False)
        batch.create_index(
            batch.f("ix_buildrequests_pending"), ["id"], unique=False, sqlite_where=_PENDING, postgresql_where=_PENDING
        )


def downgrade() -> None:
    with op.batch_alter_table("buildrequests") as batch:
        batch.drop_index(batch.f("ix_buildrequests_pending"))
        batch.drop_index(batch.f("ix_buildrequests_builder_complete_at"))
        batch.create_index(batch.f("ix_buildrequests_complete_at_builder"), ["complete_at", "builder"], unique=False)
    with op.batch_alter_table("builds") as batch:
        batch.drop_index(batch.f("ix_builds_builder_finished_at_id"))
        batch.drop_index(batch.f("ix_builds_finished_at_id"))
