"""Free-form text columns without a length limit: branches, authors, test names, names of things.

The first migrations declared ``VARCHAR(255)`` and the like, which PostgreSQL enforces and SQLite
ignores, so a 300-character branch was stored on one and refused on the other. On PostgreSQL the
columns become ``TEXT`` (a change of declared type only: no table is rewritten). SQLite is left as
it is, since it never enforced the lengths; :func:`flowbot.store.schema.compare_type` knows this.

Revision ID: 0003_text
Revises: 0002_analysis
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_text"
down_revision = "0002_analysis"
branch_labels = None
depends_on = None

#: ``(table, column, old length, nullable)`` of every column that becomes unbounded text.
COLUMNS = [
    ("changes", "repository", 512, False),
    ("changes", "branch", 255, True),
    ("changes", "revision", 255, True),
    ("changes", "project", 255, False),
    ("changes", "codebase", 255, False),
    ("changes", "author", 255, False),
    ("changes", "committer", 255, False),
    ("changes", "category", 255, True),
    ("changes", "revlink", 1024, False),
    ("change_files", "path", 1024, False),
    ("buildsets", "scheduler", 255, False),
    ("sourcestamps", "codebase", 255, False),
    ("sourcestamps", "repository", 512, False),
    ("sourcestamps", "branch", 255, True),
    ("sourcestamps", "revision", 255, True),
    ("sourcestamps", "project", 255, False),
    ("buildrequests", "builder", 255, False),
    ("buildrequests", "claimed_by", 255, True),
    ("builds", "builder", 255, False),
    ("builds", "worker", 255, False),
    ("builds", "branch", 255, True),
    ("builds", "revision", 255, True),
    ("steps", "name", 255, False),
    ("test_results", "suite", 255, False),
    ("test_results", "classname", 512, False),
    ("test_results", "name", 512, False),
    ("log_chunks", "log", 255, False),
    ("workers", "name", 255, False),
    ("scheduler_changes", "scheduler", 255, False),
    ("scheduler_changes", "timer", 255, False),
    ("state", "owner", 255, False),
    ("state", "key", 255, False),
]


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return
    for table, column, length, nullable in COLUMNS:
        op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(length), existing_nullable=nullable)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return
    for table, column, length, nullable in COLUMNS:
        op.alter_column(table, column, type_=sa.String(length), existing_type=sa.Text(), existing_nullable=nullable)
