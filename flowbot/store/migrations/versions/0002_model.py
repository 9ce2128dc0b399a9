"""Build properties, scheduler and change-source state, trigger parents, time spent waiting for locks.

Revision ID: 0002_model
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_model"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "state",
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.UniqueConstraint("owner", "key", name=op.f("uq_state_owner_key")),
    )
    op.create_table(
        "scheduler_changes",
        sa.Column("scheduler", sa.String(length=255), nullable=False),
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("timer", sa.String(length=255), nullable=False),
        sa.Column("important", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["change_id"], ["changes.id"], name=op.f("fk_scheduler_changes_change_id_changes"), ondelete="CASCADE"
        ),
    )
    with op.batch_alter_table("scheduler_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scheduler_changes_scheduler_timer"), ["scheduler", "timer"], unique=False)

    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locks_wait", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("properties", sa.JSON(), nullable=True))

    with op.batch_alter_table("buildsets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_build_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_buildsets_parent_build_id"), ["parent_build_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("buildsets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_buildsets_parent_build_id"))
        batch_op.drop_column("parent_build_id")

    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_column("locks_wait")
        batch_op.drop_column("properties")

    with op.batch_alter_table("scheduler_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scheduler_changes_scheduler_timer"))

    op.drop_table("scheduler_changes")
    op.drop_table("state")
