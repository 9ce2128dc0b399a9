"""Builds list the files they stored on the master (artifacts), with their sizes and digests.

Revision ID: 0010_artifacts
Revises: 0009_built_revisions
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_artifacts"
down_revision = "0009_built_revisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("stored_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id"], ["builds.id"], name=op.f("fk_artifacts_build_id_builds"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["step_id"], ["steps.id"], name=op.f("fk_artifacts_step_id_steps"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
    )
    op.create_index(op.f("ix_artifacts_build_id"), "artifacts", ["build_id"])
    op.create_index(op.f("ix_artifacts_path"), "artifacts", ["path"])


def downgrade() -> None:
    op.drop_table("artifacts")
