"""Each build keeps the time its request was submitted, so the history reads builds alone.

Reading a million builds with their queue times joined every build to its request for this one
number: on PostgreSQL the join was a third of ``History.builds()``. The value never changes once
the request exists, so the build keeps a copy, filled from the requests of builds already stored.

Revision ID: 0006_build_submitted_at
Revises: 0005_worker_controls
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_build_submitted_at"
down_revision = "0005_worker_controls"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("builds", sa.Column("submitted_at", sa.Float(), nullable=True))
    op.execute(
        "UPDATE builds SET submitted_at ="
        " (SELECT buildrequests.submitted_at FROM buildrequests WHERE buildrequests.id = builds.request_id)"
    )


def downgrade() -> None:
    op.drop_column("builds", "submitted_at")
