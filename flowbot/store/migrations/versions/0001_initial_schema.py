"""The initial schema: changes, buildsets, requests, builds, steps, log chunks, workers.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "buildsets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scheduler", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("submitted_at", sa.Float(), nullable=False),
        sa.Column("complete_at", sa.Float(), nullable=True),
        sa.Column("result", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buildsets")),
    )
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository", sa.String(length=512), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=True),
        sa.Column("revision", sa.String(length=255), nullable=True),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("codebase", sa.String(length=255), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=False),
        sa.Column("committer", sa.String(length=255), nullable=False),
        sa.Column("comments", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=255), nullable=True),
        sa.Column("revlink", sa.String(length=1024), nullable=False),
        sa.Column("when_at", sa.Float(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
    )
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_changes_branch_id"), ["branch", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_changes_revision"), ["revision"], unique=False)

    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("connected_at", sa.Float(), nullable=True),
        sa.Column("disconnected_at", sa.Float(), nullable=True),
        sa.Column("last_seen", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.UniqueConstraint("name", name=op.f("uq_workers_name")),
    )
    op.create_table(
        "buildrequests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("buildset_id", sa.Integer(), nullable=False),
        sa.Column("builder", sa.String(length=255), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.Float(), nullable=False),
        sa.Column("claimed_at", sa.Float(), nullable=True),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column("complete_at", sa.Float(), nullable=True),
        sa.Column("result", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["buildset_id"], ["buildsets.id"], name=op.f("fk_buildrequests_buildset_id_buildsets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buildrequests")),
    )
    with op.batch_alter_table("buildrequests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_buildrequests_buildset_id"), ["buildset_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_buildrequests_complete_at_builder"), ["complete_at", "builder"], unique=False
        )

    op.create_table(
        "buildset_changes",
        sa.Column("buildset_id", sa.Integer(), nullable=False),
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["buildset_id"],
            ["buildsets.id"],
            name=op.f("fk_buildset_changes_buildset_id_buildsets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["change_id"], ["changes.id"], name=op.f("fk_buildset_changes_change_id_changes")),
    )
    with op.batch_alter_table("buildset_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_buildset_changes_buildset_id"), ["buildset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_buildset_changes_change_id"), ["change_id"], unique=False)

    op.create_table(
        "change_files",
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.ForeignKeyConstraint(
            ["change_id"], ["changes.id"], name=op.f("fk_change_files_change_id_changes"), ondelete="CASCADE"
        ),
    )
    with op.batch_alter_table("change_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_change_files_change_id"), ["change_id"], unique=False)

    op.create_table(
        "sourcestamps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("buildset_id", sa.Integer(), nullable=False),
        sa.Column("codebase", sa.String(length=255), nullable=False),
        sa.Column("repository", sa.String(length=512), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=True),
        sa.Column("revision", sa.String(length=255), nullable=True),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["buildset_id"], ["buildsets.id"], name=op.f("fk_sourcestamps_buildset_id_buildsets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sourcestamps")),
    )
    with op.batch_alter_table("sourcestamps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sourcestamps_buildset_id"), ["buildset_id"], unique=False)

    op.create_table(
        "builds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("builder", sa.String(length=255), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=True),
        sa.Column("revision", sa.String(length=255), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("result", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["buildrequests.id"], name=op.f("fk_builds_request_id_buildrequests"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_builds")),
        sa.UniqueConstraint("builder", "number", name=op.f("uq_builds_builder_number")),
    )
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_builds_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_builds_started_at"), ["started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_builds_worker_started_at"), ["worker", "started_at"], unique=False)

    op.create_table(
        "steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("result", sa.Integer(), nullable=True),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["build_id"], ["builds.id"], name=op.f("fk_steps_build_id_builds"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_steps")),
        sa.UniqueConstraint("build_id", "number", name=op.f("uq_steps_build_id_number")),
    )
    op.create_table(
        "log_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("log", sa.String(length=255), nullable=False),
        sa.Column("first_line", sa.Integer(), nullable=False),
        sa.Column("last_line", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("streams", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name=op.f("fk_log_chunks_step_id_steps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_chunks")),
    )
    with op.batch_alter_table("log_chunks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_log_chunks_step_id_log_first_line"), ["step_id", "log", "first_line"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("log_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_log_chunks_step_id_log_first_line"))

    op.drop_table("log_chunks")
    op.drop_table("steps")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_builds_worker_started_at"))
        batch_op.drop_index(batch_op.f("ix_builds_started_at"))
        batch_op.drop_index(batch_op.f("ix_builds_request_id"))

    op.drop_table("builds")
    with op.batch_alter_table("sourcestamps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sourcestamps_buildset_id"))

    op.drop_table("sourcestamps")
    with op.batch_alter_table("change_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_change_files_change_id"))

    op.drop_table("change_files")
    with op.batch_alter_table("buildset_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_buildset_changes_change_id"))
        batch_op.drop_index(batch_op.f("ix_buildset_changes_buildset_id"))

    op.drop_table("buildset_changes")
    with op.batch_alter_table("buildrequests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_buildrequests_complete_at_builder"))
        batch_op.drop_index(batch_op.f("ix_buildrequests_buildset_id"))

    op.drop_table("buildrequests")
    op.drop_table("workers")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_changes_revision"))
        batch_op.drop_index(batch_op.f("ix_changes_branch_id"))

    op.drop_table("changes")
    op.drop_table("buildsets")
