"""The store's tables (SQLAlchemy Core), shaped to come back as tidy DataFrames.

Times are epoch seconds in floating point columns (sub-millisecond, the same on SQLite and
PostgreSQL, and one vectorised ``pd.to_datetime(unit="s", utc=True)`` away from pandas); results are
Buildbot's integer codes; builder and worker names are stored as text so a frame needs no joins to
be read. Text columns have no length limit, so SQLite and PostgreSQL take the same values; the one
limit left is PostgreSQL's on an index entry (about 2.7 kB), which :data:`MAX_INDEXED_BYTES` keeps
values of indexed columns below. Schema changes go through Alembic migrations in ``migrations/``; a
test checks that the migrations and these tables agree.

Full-text search over log chunks (an FTS5 table with triggers on SQLite, a trigram index on
PostgreSQL) is made by the migrations alone, since SQLAlchemy's metadata cannot describe it;
:func:`include_object` leaves it out when Alembic compares the two.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: One row per change received (commit, push, sendchange).
changes = Table(
    "changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("repository", Text, nullable=False, default=""),
    Column("branch", Text),
    Column("revision", Text),
    Column("project", Text, nullable=False, default=""),
    Column("codebase", Text, nullable=False, default=""),
    Column("author", Text, nullable=False, default=""),
    Column("committer", Text, nullable=False, default=""),
    Column("comments", Text, nullable=False, default=""),
    Column("category", Text),
    Column("revlink", Text, nullable=False, default=""),
    Column("when_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("properties", JSON, nullable=False),
    Index(None, "branch", "id"),
    Index(None, "revision"),
    Index(None, "received_at"),  # the changes between two builds (culprits)
)

#: The files a change touched.
change_files = Table(
    "change_files",
    metadata,
    Column("change_id", Integer, ForeignKey("changes.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("path", Text, nullable=False),
)

#: The pull requests (and merge requests) builds were for, one row per repository and number, as
#: their newest change described them; ``closed_at`` is set when the pull request was closed.
pull_requests = Table(
    "pull_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("repository", Text, nullable=False),
    Column("number", Integer, nullable=False),
    Column("title", Text, nullable=False, default=""),
    Column("url", Text, nullable=False, default=""),
    Column("base_branch", Text, nullable=False, default=""),
    Column("head_branch", Text, nullable=False, default=""),
    Column("head_repository", Text, nullable=False, default=""),
    Column("author", Text, nullable=False, default=""),
    Column("fork", Boolean, nullable=False, default=False),
    #: When its newest change was received.
    Column("updated_at", Float, nullable=False),
    Column("closed_at", Float),
    UniqueConstraint("repository", "number"),
)

#: The requests one scheduler event made (one per builder), with their shared sources.
buildsets = Table(
    "buildsets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scheduler", Text, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("properties", JSON, nullable=False),
    Column("submitted_at", Float, nullable=False),
    Column("complete_at", Float),
    Column("result", Integer),
    #: The build whose Trigger step made this buildset (stopping it stops these builds too).
    Column("parent_build_id", Integer, index=True),
    #: The pull request it builds, if it builds one (a ``pull_requests`` id).
    Column("pull_request_id", Integer, index=True),
)

#: Which source a buildset builds, one row per codebase.
sourcestamps = Table(
    "sourcestamps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("buildset_id", Integer, ForeignKey("buildsets.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("codebase", Text, nullable=False, default=""),
    Column("repository", Text, nullable=False, default=""),
    Column("branch", Text),
    Column("revision", Text),
    Column("project", Text, nullable=False, default=""),
)

#: The changes that caused a buildset (for "which change broke the build").
buildset_changes = Table(
    "buildset_changes",
    metadata,
    Column("buildset_id", Integer, ForeignKey("buildsets.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("change_id", Integer, ForeignKey("changes.id"), nullable=False, index=True),
)

#: A builder's matrix in a buildset: its axes ``[[name, [values]], ...]`` in order; one request per cell.
matrices = Table(
    "matrices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("buildset_id", Integer, ForeignKey("buildsets.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("builder", Text, nullable=False),
    Column("axes", JSON, nullable=False),
    Column("submitted_at", Float, nullable=False),
    Index(None, "builder", "id"),  # a builder's matrices, newest first
)

#: One request per builder per buildset (per cell, for a matrix); pending until a build of it completes.
buildrequests = Table(
    "buildrequests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("buildset_id", Integer, ForeignKey("buildsets.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("builder", Text, nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("submitted_at", Float, nullable=False),
    Column("claimed_at", Float),
    Column("claimed_by", Text),
    Column("complete_at", Float),
    Column("result", Integer),
    #: Why it completed without a build ("superseded by <revision>"), when it did.
    Column("summary", Text),
    #: The matrix it is a cell of (both go with their buildset), and the cell: ``{axis: value}``.
    Column("matrix_id", Integer, index=True),
    Column("cell", JSON(none_as_null=True)),
    # The requests pending alone: an index of every request by complete_at could lead PostgreSQL's planner
    # to take the janitor through the old requests of every builder to reach one builder's
    Index(
        "ix_buildrequests_pending",
        "id",
        sqlite_where=text("complete_at IS NULL"),
        postgresql_where=text("complete_at IS NULL"),
    ),
    Index(None, "builder", "complete_at"),  # the janitor's purge, one builder at a time
)

#: One row per run of a request; a request lost with its worker has several (RETRY, then the rerun).
builds = Table(
    "builds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("request_id", Integer, ForeignKey("buildrequests.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("builder", Text, nullable=False),
    Column("number", Integer, nullable=False),
    Column("worker", Text, nullable=False),
    Column("branch", Text),
    Column("revision", Text),
    #: When its request was submitted: a copy of the request's, so the history reads builds alone.
    Column("submitted_at", Float),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("result", Integer),
    Column("summary", Text, nullable=False, default=""),
    #: Seconds the build spent waiting for locks.
    Column("locks_wait", Float, nullable=False, server_default="0"),
    #: ``{name: [value, source]}``: as the build started, as each step left them, as the build ended.
    Column("properties", JSON),
    #: The pull request it built (its buildset's), so the history reads builds alone.
    Column("pull_request_id", Integer, index=True),
    #: Which build of its request this is (a request runs again after RETRY).
    Column("attempt", Integer, nullable=False, server_default="1"),
    UniqueConstraint("builder", "number"),
    Index(None, "started_at"),
    Index(None, "worker", "started_at"),
    Index(None, "builder", "started_at"),  # one builder's history
    # The builds finished since, a page at a time, for an event stream resuming (of one builder, or all)
    Index(None, "finished_at", "id"),
    Index(None, "builder", "finished_at", "id"),
)

#: The steps of a build, in order.
steps = Table(
    "steps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("build_id", Integer, ForeignKey("builds.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("result", Integer),
    Column("hidden", Boolean, nullable=False, default=False),
    Column("summary", Text, nullable=False, default=""),
    #: How many times the step ran (its ``Retry``); earlier attempts' logs are ``NAME (attempt N)``.
    Column("attempts", Integer, nullable=False, server_default="1"),
    UniqueConstraint("build_id", "number"),
)

#: One row per test case a step reported (parsed from JUnit XML by :mod:`flowbot.junit`).
#: ``outcome`` is one of passed, failed, error, skipped; ``duration`` is in seconds; ``file`` and
#: ``line`` say where the test is, when its report does.
test_results = Table(
    "test_results",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("build_id", Integer, ForeignKey("builds.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("step_id", Integer, ForeignKey("steps.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("suite", Text, nullable=False, default=""),
    Column("classname", Text, nullable=False, default=""),
    Column("name", Text, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("duration", Float),
    Column("message", Text, nullable=False, default=""),
    Column("file", Text),
    Column("line", Integer),
    Index(None, "name", "classname"),  # the history of one test
)

#: Log text in chunks of whole lines. A step has a ``stdio`` log (lines tagged o, e or h for stdout,
#: stderr and header, one tag per line in ``streams``) and any number of other logs, by name. The
#: text is Zstandard-compressed in ``compressed``; chunks stored before that keep it in ``content``
#: (read both through :func:`flowbot.store.log_codec.unpack`).
log_chunks = Table(
    "log_chunks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("step_id", Integer, ForeignKey("steps.id", ondelete="CASCADE"), nullable=False),
    Column("log", Text, nullable=False),
    Column("first_line", Integer, nullable=False),
    Column("last_line", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("streams", Text, nullable=False),
    Column("compressed", LargeBinary),
    Index(None, "step_id", "log", "first_line"),
)

#: What builds stored on the master (``FileUpload``, ``DirectoryUpload``): one row per file, its
#: ``path`` relative to the artifacts directory (with ``/``), its size and SHA-256, and the
#: ``mtime_ns`` it had when stored, which tells a file a later upload replaced.
artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("build_id", Integer, ForeignKey("builds.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("step_id", Integer, ForeignKey("steps.id", ondelete="CASCADE"), nullable=False),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("stored_at", Float, nullable=False),
    Index(None, "path"),  # whether another build's file is at the same place
)

#: Workers the master has seen, with when they were last heard from, and whether someone paused them.
workers = Table(
    "workers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("info", JSON, nullable=False),
    Column("connected_at", Float),
    Column("disconnected_at", Float),
    Column("last_seen", Float),
    #: When the worker was paused (it takes no new builds); NULL while it takes them.
    Column("paused_at", Float),
    Column("paused_reason", Text),
)

#: Changes a scheduler holds until its tree-stable timer fires (or its nightly run comes).
scheduler_changes = Table(
    "scheduler_changes",
    metadata,
    Column("scheduler", Text, nullable=False),
    Column("change_id", Integer, ForeignKey("changes.id", ondelete="CASCADE"), nullable=False),
    #: Which timer the change belongs to (the branch, for schedulers with one timer per branch).
    Column("timer", Text, nullable=False, default=""),
    Column("important", Boolean, nullable=False),
    Index(None, "scheduler", "timer"),
)

#: What change sources and schedulers remember across restarts (last revisions, last runs).
state = Table(
    "state",
    metadata,
    Column("owner", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("value", JSON),
    UniqueConstraint("owner", "key"),
)

#: What the migrations create for log search beyond these tables (see :mod:`flowbot.store.log_search`):
#: the index (SQLite's FTS5 table, whose shadow tables share its name as a prefix, or PostgreSQL's
#: table of chunk text with a trigram index) and the queue of chunks it has yet to take in.
LOG_SEARCH_TABLE = "log_search"
LOG_SEARCH_INDEX = "ix_log_search_content_trgm"


#: The longest value, in UTF-8 bytes, that the store puts in an indexed text column a change or a test
#: report fills (a branch, a revision, a test's name and class): two of them fit in one PostgreSQL
#: index entry.
MAX_INDEXED_BYTES = 1024


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's filter: compare everything except the log search structures the migrations own."""
    if type_ == "table" and reflected and name is not None and name.startswith(LOG_SEARCH_TABLE):
        return False
    return not (type_ == "index" and name == LOG_SEARCH_INDEX)


def compare_type(
    context: Any, inspected_column: Any, metadata_column: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    """Alembic's type comparison, except that SQLite's text columns all match: SQLite ignores the
    lengths that the first migrations declared, so they were never changed there."""
    if context.dialect.name == "sqlite" and isinstance(inspected_type, String) and isinstance(metadata_type, String):
        return False
    return None  # Alembic's own comparison
