"""Paused workers: a worker someone paused stays paused across master restarts and reconnects.

``paused_at`` is when it was paused (NULL: it takes builds), ``paused_reason`` what the person
who paused it said. Adding nullable columns rewrites no table on either database.

Revision ID: 0005_worker_controls
Revises: 0004_log_search_queue
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_worker_controls"
down_revision = "0004_log_search_queue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("paused_at", sa.Float(), nullable=True))
    op.add_column("workers", sa.Column("paused_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("paused_reason")
        batch.drop_column("paused_at")
