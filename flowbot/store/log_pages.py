"""Reading a stored log as people read it: a page of lines anywhere in it, and the first error.

A log is stored in chunks of whole lines (``log_chunks``: ``first_line``, ``last_line``); a page
reads only the chunks that hold its lines, so any page of a log of millions of lines costs a few
chunks. These run on the store's thread with a connection it gives them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from ..errors import NotFound
from . import schema as t
from .log_codec import unpack

#: A line a person would call an error: a failed test, an exception, a compiler's "error:".
ERROR_LINE = re.compile(
    r"\b(?:[A-Z]\w*(?:Error|Exception)|error|ERROR|Error|FAIL(?:ED|URE)?|[Ff]ailed|Traceback|[Ff]atal)\b"
)

#: Terminal escape sequences (colours), which a line is read without.
ESCAPES = re.compile(r"\x1b\[[0-9;:?]*[@-~]")


@dataclass(frozen=True, slots=True)
class LogPage:
    """Lines ``first`` to ``first + len(lines) - 1`` of a log of ``total`` lines (so far)."""

    first: int
    #: ``(tag, text)``: the tag is o, e or h (stdout, stderr, header).
    lines: list[tuple[str, str]]
    total: int


def _chunks(step_id: int, name: str) -> sa.Select:
    c = t.log_chunks.c
    return sa.select(c.first_line, c.content, c.compressed, c.streams).where(c.step_id == step_id, c.log == name)


def total_lines(conn: sa.Connection, step_id: int, name: str) -> int | None:
    """How many lines the log has, or None when it has none stored (no chunk)."""
    c = t.log_chunks.c
    last = conn.execute(
        sa.select(c.last_line).where(c.step_id == step_id, c.log == name).order_by(c.first_line.desc()).limit(1)
    ).scalar()
    return None if last is None else last + 1


def page(conn: sa.Connection, step_id: int, name: str, first: int | None, count: int) -> LogPage:
    """``count`` lines from line ``first`` (None: the last ``count`` lines).

    Raises:
        NotFound: the step has no log of that name (every step has a ``stdio`` log, even empty).
    """
    total = total_lines(conn, step_id, name)
    if total is None:
        if name != "stdio":
            raise NotFound(f"the step has no log {name!r}")
        return LogPage(0, [], 0)
    if first is None:
        first = max(total - count, 0)
    end = min(first + count, total)
    c = t.log_chunks.c
    lines: list[tuple[str, str]] = []
    start = None
    if first < end:
        for chunk_first, content, compressed, streams in conn.execute(
            _chunks(step_id, name).where(c.last_line >= first, c.first_line < end).order_by(c.first_line)
        ):
            start = chunk_first if start is None else start
            lines += zip(streams, unpack(content, compressed).split("\n"), strict=True)
    if start is None:
        return LogPage(min(first, total), [], total)
    return LogPage(first, lines[first - start : end - start], total)


def first_match(conn: sa.Connection, step_id: int, name: str, pattern: re.Pattern[str], after: int = 0) -> int | None:
    """The number of the first line of output (not a header: those show commands) at or after
    ``after`` that ``pattern`` finds something in."""
    c = t.log_chunks.c
    for chunk_first, content, compressed, streams in conn.execute(
        _chunks(step_id, name).where(c.last_line >= after).order_by(c.first_line)
    ):
        for offset, (tag, line) in enumerate(zip(streams, unpack(content, compressed).split("\n"), strict=True)):
            if tag != "h" and chunk_first + offset >= after and pattern.search(ESCAPES.sub("", line)):
                return chunk_first + offset
    return None
