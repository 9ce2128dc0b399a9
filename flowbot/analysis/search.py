"""Searching every build's logs for a piece of text.

The database finds the log chunks that may contain the text through an index made for substring
search (migration ``0013_log_compression``): on SQLite an FTS5 trigram index that knows which chunks
hold each trigram, on PostgreSQL pg_trgm's GIN index over each chunk's text. Both match any case,
and both need three characters to use the index; shorter text, or a database without the index, is
found by reading the chunks, as are the chunks queued for indexing but not indexed yet. pandas then
splits the chunks found (decompressed) into lines and keeps the lines that contain the text, reading
the newest chunks first, a batch at a time, until it has enough lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from ..store import schema as t
from ..store.log_codec import unpack
from ..store.log_search import QUEUE_TABLE, trigrams
from .dtypes import TimeLike, timestamps

if TYPE_CHECKING:
    from .reader import Reader

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
#: Chunks read at a time, newest first, until enough lines are found.
SCAN = 200


def search_logs(
    reader: Reader,
    pattern: str,
    builder: str | None = None,
    since: TimeLike = None,
    until: TimeLike = None,
    limit: int = 1000,
) -> pd.DataFrame:
    """The log lines that contain ``pattern`` (plain text, any case), newest builds first."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("search_logs needs some text to look for")
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit={limit!r}: ask for at least one line")
    query = reader.build_filter(
        sa.select(
            _b.id.label("build_id"),
            _b.builder,
            _b.number.label("build_number"),
            _b.started_at,
            _s.number.label("step_number"),
            _s.name.label("step"),
            _l.id,
            _l.log,
            _l.first_line,
            _l.content,
            reader.compressed.label("compressed"),
            _l.streams,
        )
        .select_from(t.log_chunks)
        .join(t.steps, _s.id == _l.step_id)
        .join(t.builds, _b.id == _s.build_id)
        .where(_candidates(reader, pattern))
        .order_by(_l.id.desc())
        .limit(SCAN),
        builder=builder,
        since=since,
        until=until,
    )
    found, count, below = [], 0, None
    while True:
        chunks = reader.read(query if below is None else query.where(_l.id < below))
        if found and chunks.empty:
            break
        found.append(lines := _lines(chunks, pattern))
        count += len(lines)
        if len(chunks) < SCAN or count >= limit:
            break
        below = int(chunks["id"].min())
    lines = pd.concat(found, ignore_index=True) if len(found) > 1 else found[0]
    lines = lines.sort_values(["build_id", "step_number", "log", "line_number"], ascending=[False, True, True, True])
    return lines.head(limit).reset_index(drop=True)[COLUMNS]


def _candidates(reader: Reader, pattern: str) -> sa.ColumnElement[bool]:
    """The condition on ``log_chunks`` that finds the chunks that may hold ``pattern``: through the
    index where there is one, with the chunks it has yet to take in; else every compressed chunk,
    and the old ones that hold it."""
    may_hold = sa.or_(reader.compressed.is_not(None), _contains(_l.content, pattern))
    if len(pattern) < 3 or t.LOG_SEARCH_TABLE not in reader.tables:
        return may_hold
    if reader.dialect == "sqlite":
        index = sa.table(t.LOG_SEARCH_TABLE, sa.column("rowid"))
        match = sa.text(f"{t.LOG_SEARCH_TABLE} MATCH :grams").bindparams(grams=trigrams(pattern))
        hits = sa.select(index.c.rowid).where(match)
    else:
        index = sa.table(t.LOG_SEARCH_TABLE, sa.column("chunk_id"), sa.column("content"))
        hits = sa.select(index.c.chunk_id).where(_contains(index.c.content, pattern))
    queue, chunk = sa.table(QUEUE_TABLE, sa.column("chunk_id")), t.log_chunks.alias("queued")
    queued = sa.select(chunk.c.id).join(queue, queue.c.chunk_id == chunk.c.id)
    return _l.id.in_(
        sa.union_all(hits, queued.where(sa.or_(chunk.c.compressed.is_not(None), _contains(chunk.c.content, pattern))))
    )


def _contains(column: sa.ColumnElement[str], pattern: str) -> sa.ColumnElement[bool]:
    """``column`` contains ``pattern``, in any case, by scanning."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")


def _lines(chunks: pd.DataFrame, pattern: str) -> pd.DataFrame:
    """The lines of ``chunks`` that hold ``pattern``, numbered."""
    pairs = zip(chunks["content"], chunks["compressed"], strict=True)
    texts = pd.Series([unpack(content, compressed) for content, compressed in pairs], index=chunks.index, dtype=object)
    chunks = chunks.assign(line=texts.str.split("\n"), stream=chunks["streams"].map(list))
    lines = chunks.drop(columns=["content", "compressed", "streams"]).explode(["line", "stream"], ignore_index=False)
    lines["line_number"] = lines["first_line"] + lines.groupby(level=0).cumcount() + 1
    lines = lines[lines["line"].str.contains(pattern, case=False, regex=False)].reset_index(drop=True)
    lines["stream"] = lines["stream"].map(STREAMS)
    lines["started_at"] = timestamps(lines["started_at"])
    return lines
