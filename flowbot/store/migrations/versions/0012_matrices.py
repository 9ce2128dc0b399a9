"""Matrix builds: a builder's matrix in a buildset, and the cell each of its requests builds.

Revision ID: 0012_matrices
Revises: 0011_pull_requests
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_matrices"
down_revision = "0011_pull_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "matrices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("buildset_id", sa.Integer(), nullable=False),
        sa.Column("builder", sa.Text(), nullable=False),
        sa.Column("axes", sa.JSON(), nullable=False),
        sa.Column("submitted_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["buildset_id"], ["buildsets.id"], name=op.f("fk_matrices_buildset_id_buildsets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matrices")),
    )
    op.create_index(op.f("ix_matrices_buildset_id"), "matrices", ["buildset_id"])
    op.create_index(op.f("ix_matrices_builder_id"), "matrices", ["builder", "id"])
    # Added in place: no copy of a table that may be large. The matrix and its requests both go
    # with their buildset, so matrix_id needs no foreign key of its own to stay true.
    op.add_column("buildrequests", sa.Column("matrix_id", sa.Integer(), nullable=True))
    op.add_column("buildrequests", sa.Column("cell", sa.JSON(none_as_null=True), nullable=True))
    op.create_index(op.f("ix_buildrequests_matrix_id"), "buildrequests", ["matrix_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_buildrequests_matrix_id"), "buildrequests")
    op.drop_column("buildrequests", "cell")
    op.drop_column("buildrequests", "matrix_id")
    op.drop_table("matrices")
