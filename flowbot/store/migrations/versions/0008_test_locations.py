"""Each test result keeps where the test is (file and line), when its report says, so a failing test
can be pointed at in the code under review (a GitHub check run's annotations).

Revision ID: 0008_test_locations
Revises: 0007_stream_and_janitor_indexes
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_test_locations"
down_revision = "0007_stream_and_janitor_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("test_results") as batch:
        batch.add_column(sa.Column("file", sa.Text(), nullable=True))
        batch.add_column(sa.Column("line", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("test_results") as batch:
        batch.drop_column("line")
        batch.drop_column("file")
