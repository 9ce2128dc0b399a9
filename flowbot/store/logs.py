"""Step logs: lines appended in chunks (compressed: see :mod:`.log_codec`), read back whole, by
page or from the end; and whether new chunks are queued for search (see :mod:`.log_search`)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter

import sqlalchemy as sa

from ..errors import NotFound
from . import log_pages
from . import schema as t
from . import statements as sql
from .access import Access, Ref
from .builds import step_id
from .log_codec import pack, unpack
from .log_pages import LogPage

log = logging.getLogger(__name__)


class Logs:
    """The ``log_chunks`` table and its search queue."""

    def __init__(self, db: Access):
        self._db = db
        #: Whether new log chunks wait in a queue for search indexing (see :mod:`.log_search`).
        self.queues_search = False
        #: Set when chunks may be queued for indexing (at first, what an earlier run left).
        self.queued = asyncio.Event()
        self.queued.set()

    def append(
        self, step: Ref, log: str, first_line: int, content: str, streams: str, *, wait: float = math.inf
    ) -> asyncio.Future[None]:
        """Add whole lines to a step's log (``streams`` tags each line: o, e or h); ``wait``: seconds
        the lines may wait for a database that cannot take them before they are given up."""
        chunk = {
            "log": log,
            "first_line": first_line,
            "last_line": first_line + len(streams) - 1,
            "streams": streams,
        }

        def op(conn: sa.Connection) -> None:
            sql.INSERT_LOG_CHUNK.run(conn, {"step_id": step.get(), "content": "", "compressed": pack(content), **chunk})

        if self.queues_search:
            self.queued.set()
        return self._db.submit(op, wait=wait)

    def rename(self, step: Ref, names: dict[str, str]) -> asyncio.Future[None]:
        """Keep a step's logs under new names (``{old: new}``), after the lines already queued."""

        def op(conn: sa.Connection) -> None:
            chunks = t.log_chunks.c
            for old, new in names.items():
                renamed = t.log_chunks.update().where(chunks.step_id == step.get(), chunks.log == old)
                conn.execute(renamed.values(log=new))

        return self._db.keep(op)

    async def tail(
        self, build_id: int, step_number: int, name: str = "stdio", lines: int = 200
    ) -> tuple[list[tuple[str, str]], int]:
        """The last ``lines`` lines of a stored log as ``(stream, line)`` pairs, and the number of the first.

        Only the chunks needed are read, however long the log.
        """

        def fn(conn: sa.Connection) -> tuple[list[tuple[str, str]], int]:
            step = step_id(conn, build_id, step_number)
            chunks = t.log_chunks.c
            tail: list[tuple[str, str]] = []
            first, end = 0, 0
            found = False
            for first, content, compressed, streams in conn.execute(
                sa.select(chunks.first_line, chunks.content, chunks.compressed, chunks.streams)
                .where(chunks.step_id == step, chunks.log == name)
                .order_by(chunks.first_line.desc())
            ):
                if not found:
                    end = first + len(streams)
                found = True
                tail[:0] = zip(streams, unpack(content, compressed).split("\n"), strict=True)
                if len(tail) >= lines:
                    break
            if not found and name != "stdio":
                raise NotFound(f"no log {name!r} for step {step_number} of build {build_id}")
            kept = tail[-lines:] if lines else []
            return kept, end - len(kept)

        return await self._db.read(fn)

    async def lines(
        self, build_id: int, step_number: int, name: str = "stdio", *, start: int = 0, chunks: int | None = None
    ) -> list[tuple[str, str]]:
        """A stored log as ``(stream, line)`` pairs: from line ``start`` (0 or where a page ended)
        to the end, or only ``chunks`` stored chunks of it (a page; the next starts at ``start + len(page)``)."""

        def fn(conn: sa.Connection) -> list[tuple[str, str]]:
            step = step_id(conn, build_id, step_number)
            c = t.log_chunks.c
            lines: list[tuple[str, str]] = []
            for content, compressed, streams in conn.execute(
                sa.select(c.content, c.compressed, c.streams)
                .where(c.step_id == step, c.log == name, c.first_line >= start)
                .order_by(c.first_line)
                .limit(chunks)
            ):
                lines += zip(streams, unpack(content, compressed).split("\n"), strict=True)
            if not lines and not start and name != "stdio":  # every step has a stdio log, even an empty one
                raise NotFound(f"no log {name!r} for step {step_number} of build {build_id}")
            return lines

        return await self._db.read(fn)

    async def stream_lines(self, build_id: int, step_number: int, name: str = "stdio") -> dict[str, int]:
        """How many lines of each stream tag (``o``, ``e``, ``h``) a stored log holds: where a
        command taken up after a master restart goes on (reads the tags only)."""

        def fn(conn: sa.Connection) -> dict[str, int]:
            step = step_id(conn, build_id, step_number)
            c = t.log_chunks.c
            counts: Counter[str] = Counter()
            for (streams,) in conn.execute(sa.select(c.streams).where(c.step_id == step, c.log == name)):
                counts.update(streams)
            return dict(counts)

        return await self._db.read(fn)

    async def page(
        self, build_id: int, step_number: int, name: str = "stdio", *, first: int | None = 0, count: int = 500
    ) -> LogPage:
        """``count`` lines of a stored log from line ``first`` (None: its last ``count``), and how many it has."""
        return await self._db.read(
            lambda conn: log_pages.page(conn, step_id(conn, build_id, step_number), name, first, count)
        )

    async def first_error(self, build_id: int, step_number: int, name: str = "stdio", *, after: int = 0) -> int | None:
        """The number of the log's first line that reads as an error (from line ``after``), or None."""
        return await self._db.read(
            lambda conn: log_pages.first_match(
                conn, step_id(conn, build_id, step_number), name, log_pages.ERROR_LINE, after
            )
        )
