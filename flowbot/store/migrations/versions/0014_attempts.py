"""Builds and steps say which attempt they are: a build run again by its builder's ``Retry`` is
attempt 2, 3... of its request, and a step run again by its own ``Retry`` counts its attempts.

Revision ID: 0014_attempts
Revises: 0013_log_compression
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_attempts"
down_revision = "0013_log_compression"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN with a default: no table is copied, however many builds it holds.
    op.add_column("builds", sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("steps", sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN, on SQLite too (3.35 and later): no table is copied.
    op.drop_column("steps", "attempts")
    op.drop_column("builds", "attempt")
