"""Searching every build's logs for a piece of text.

The database finds the log chunks that contain the text through an index made for substring
search: SQLite's FTS5 table with the trigram tokenizer, PostgreSQL's pg_trgm GIN index (both made
by migration ``0002_analysis``). Both match case-insensitively, and both need three characters to
use the index; shorter text, or a database without the index, is found by scanning, as are the
chunks SQLite has queued for indexing but not indexed yet (migration ``0004_log_search_queue``). pandas then
splits the matching chunks into lines and keeps the lines that contain the text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from ..store import schema as t
from ..store.log_search import QUEUE_TABLE
from .dtypes import TimeLike, timestamps

if TYPE_CHECKING:
    from .history import History

_b, _s, _l = t.builds.c, t.steps.c, t.log_chunks.c
#: Stream tags as stored, and as shown.
STREAMS = {"o": "stdout", "e": "stderr", "h": "header"}
COLUMNS = [
    "build_id",
    "builder",
    "build_number",
    "started_at",
    "step_number",
    "step",
    "log",
    "line_number",
    "stream",
    "line",
]


def search_logs(
    history: History,
    pattern: str,
    builder: str | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
    limit: int = 1000,
) -> pd.DataFrame:
    """The log lines that contain ``pattern`` (plain text, any case), newest builds first.

    Args:
        pattern: the text to find; at least three characters to use the index.
        builder, since, until: which builds to search (by the build's start).
        limit: at most this many lines.

    Returns:
        Columns ``build_id, builder, build_number, started_at, step_number, step, log,
        line_number`` (counted from 1, as editors do), ``stream`` (stdout, stderr or header) and
        ``line``.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("search_logs needs some text to look for")
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit={limit!r}: ask for at least one line")
    query = (
        sa.select(
            _b.id.label("build_id"),
            _b.builder,
            _b.number.label("build_number"),
            _b.started_at,
            _s.number.label("step_number"),
            _s.name.label("step"),
            _l.log,
            _l.first_line,
            _l.content,
            _l.streams,
        )
        .select_from(t.log_chunks)
        .join(t.steps, _s.id == _l.step_id)
        .join(t.builds, _b.id == _s.build_id)
        .where(_matches(history, pattern))
        .order_by(_l.id.desc())
        .limit(limit)  # each matching chunk has at least one matching line
    )
    chunks = history.read(history.build_filter(query, builder=builder, since=since, until=until))
    return _lines(chunks, pattern, limit)


def _matches(history: History, pattern: str) -> sa.ColumnElement[bool]:
    """The condition on ``log_chunks`` that finds ``pattern``, through the index where there is one."""
    if history.dialect == "sqlite" and len(pattern) >= 3 and t.LOG_SEARCH_TABLE in history.tables:
        phrase = '"' + pattern.replace('"', '""') + '"'  # one FTS5 string: no query syntax
        fts = sa.table(t.LOG_SEARCH_TABLE, sa.column("rowid"))
        hits = sa.select(fts.c.rowid).where(sa.text(f"{t.LOG_SEARCH_TABLE} MATCH :phrase").bindparams(phrase=phrase))
        if QUEUE_TABLE in history.tables:  # chunks not indexed yet are few: scan them
            queue, chunk = sa.table(QUEUE_TABLE, sa.column("chunk_id")), t.log_chunks.alias("queued")
            queued = sa.select(chunk.c.id).join(queue, queue.c.chunk_id == chunk.c.id)
            hits = sa.union_all(hits, queued.where(_contains(chunk.c.content, pattern)))
        return _l.id.in_(hits)
    return _contains(_l.content, pattern)


def _contains(column: sa.ColumnElement[str], pattern: str) -> sa.ColumnElement[bool]:
    """``column`` contains ``pattern``, in any case, by scanning."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")


def _lines(chunks: pd.DataFrame, pattern: str, limit: int) -> pd.DataFrame:
    chunks["line"] = chunks["content"].str.split("\n")
    chunks["stream"] = chunks["streams"].map(list)
    lines = chunks.drop(columns=["content", "streams"]).explode(["line", "stream"], ignore_index=False)
    lines["line_number"] = lines["first_line"] + lines.groupby(level=0).cumcount() + 1
    lines = lines[lines["line"].str.contains(pattern, case=False, regex=False)].reset_index(drop=True)
    lines["stream"] = lines["stream"].map(STREAMS)
    lines["started_at"] = timestamps(lines["started_at"])
    lines = lines.sort_values(["build_id", "step_number", "log", "line_number"], ascending=[False, True, True, True])
    return lines.head(limit).reset_index(drop=True)[COLUMNS]
