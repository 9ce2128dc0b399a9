"""A running step's log: bytes from the worker become lines, live events and stored chunks.

Output arrives in arbitrary pieces; lines are cut at ``\\n`` per stream, decoded as UTF-8 (bytes
that are not UTF-8, and characters no database keeps, are replaced, never fatal), shown live to
subscribers at once, and written to the store in chunks of about 64 KiB or every half second,
whichever comes first. Secrets are hidden in all the text that arrives at once before it is cut
into lines, so a secret of several lines is hidden whole when it comes whole.

A log keeps at most ``limit`` bytes of a program's output (``max_log``): past that, output is
counted and acknowledged, never stored or shown, and the log says, in lines of its own, when it
reached its limit and, as each command ends, how much it did not keep. A line longer than
:data:`~flowbot.defaults.LOG_LINE_BYTES` is split into pieces that each end in
:data:`~flowbot.defaults.LOG_LINE_CUT`, never inside a UTF-8 character, so nothing is cut silently.

What the log has taken is acknowledged to the worker only once it is stored (see
:meth:`LogWriter.output`), so a worker keeps, and sends again when asked, whatever a master could
still lose. A chunk waits for a store that cannot take it (its database restarting, its disk
full) for :data:`~flowbot.defaults.LOG_WRITE_PATIENCE` seconds; past that its lines are given up,
and so are the next ones while the store stays away, so the step's output flows again instead of
holding the command up. The log then says, in a line of its own, how many lines it lacks and why,
and the build that lost them is not a plain success (see :class:`~flowbot.master.build.RunningBuild`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..defaults import LOG_CHUNK_BYTES, LOG_CHUNK_DELAY, LOG_LINE_BYTES, LOG_LINE_CUT, LOG_WRITE_PATIENCE
from ..store import Ref
from ..text import keepable

log = logging.getLogger(__name__)

#: One-letter stream tags, as Buildbot stores them.
STREAM_TAGS = {"stdout": "o", "stderr": "e", "header": "h"}

#: Called with the number of the first new line and the new ``(tag, line)`` pairs.
LinesListener = Callable[[int, list[tuple[str, str]]], None]


class LogChunks(Protocol):
    """Where a log's chunks are stored."""

    def append(
        self, step: Ref, log: str, first_line: int, content: str, streams: str, *, wait: float
    ) -> asyncio.Future[None]: ...


class LogStore(Protocol):
    """What a log needs of the store."""

    @property
    def available(self) -> bool: ...

    @property
    def logs(self) -> LogChunks: ...


_CUT = LOG_LINE_CUT.encode()


def _decode(data: bytes) -> str:
    return keepable(data.decode("utf-8", "replace"))


def _boundary(line: bytes, size: int) -> int:
    """Where to cut ``line`` at most ``size`` bytes in: not inside a UTF-8 character."""
    end = size
    while end > size - 3 and line[end] & 0xC0 == 0x80:  # a continuation byte: the character began before
        end -= 1
    return end if line[end] & 0xC0 != 0x80 else size


def _split(line: bytes) -> list[bytes]:
    """``line`` in pieces of at most :data:`LOG_LINE_BYTES`, each but the last marked as cut."""
    pieces = []
    while len(line) > LOG_LINE_BYTES:
        end = _boundary(line, LOG_LINE_BYTES)
        pieces.append(line[:end] + _CUT)
        line = line[end:]
    pieces.append(line)
    return pieces


def size(count: int) -> str:
    """A number of bytes as people read it: ``64 MiB``, ``1.5 GiB``, ``900 bytes``."""
    if count < 1024:
        return f"{count} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}".replace(".0 ", " ")
    raise AssertionError("unreachable")


@dataclass(slots=True)
class _Gap:
    """Lines the store could not keep, that the log has not yet said it lacks."""

    first: int
    last: int
    count: int
    reason: str

    def add(self, first: int, count: int) -> None:
        self.first, self.last = min(self.first, first), max(self.last, first + count - 1)
        self.count += count

    def note(self) -> str:
        where = f"line {self.first}" if self.count == 1 else f"lines {self.first} to {self.last}"
        return f"[{self.count} line(s) of this log could not be stored ({where}): {self.reason}]"


class LogWriter:
    """One log of a running step.

    Args:
        step: the store's reference to the step (its id may still be on its way).
        name: the log's name (``stdio`` for a command's output).
        store: where the chunks go.
        on_lines: called with the first new line's number and the new ``(tag, line)`` pairs as they
            appear (for live views, which use the number to join them to a stored tail).
        redact: applied to every line first (it hides the secrets the build used).
        on_lost: called with a number of lines the store could not keep.
        first_line: the number of its first line (above 0 for a log that goes on after a master restart).
        limit: the most bytes of output it keeps (None: all of it).
    """

    def __init__(
        self,
        step: Ref,
        name: str,
        store: LogStore,
        on_lines: LinesListener | None = None,
        redact: Callable[[str], str] | None = None,
        on_lost: Callable[[int], None] | None = None,
        *,
        first_line: int = 0,
        limit: int | None = None,
    ):
        self.step = step
        self.name = name
        self._store = store
        self._on_lines = on_lines
        self._redact = redact
        self._on_lost = on_lost
        self._partial: dict[str, bytes] = {}
        self._lines: list[str] = []
        self._tags: list[str] = []
        self._size = 0
        self.num_lines = first_line  # lines handed to the store so far
        self._timer: asyncio.TimerHandle | None = None
        #: Writes not yet committed; the owner awaits them before the build counts as recorded.
        self.writes: set[asyncio.Future] = set()
        self._next: asyncio.Future[None] | None = None  # settles once the lines gathered now are stored
        self._last: asyncio.Future[None] | None = None  # settles once those of the last flush are
        self._gap: _Gap | None = None
        self._closed = False
        #: Lines the store could not keep.
        self.lost = 0
        self.limit = limit
        #: Bytes of output taken, and of those, past the limit (counted, not kept).
        self.taken = 0
        self.dropped = 0
        self._unsaid_bytes = self._unsaid_lines = 0  # dropped since the log last said so

    # -- writing ------------------------------------------------------------------------------

    # Text given as text may come from anywhere (a worker's message, a step's own): kept as
    # both databases can keep it, or one stray character would lose the whole chunk.
    def header(self, text: str) -> None:
        self._add("h", keepable(text))

    def stdout(self, text: str) -> None:
        self._add("o", keepable(text))

    def stderr(self, text: str) -> None:
        self._add("e", keepable(text))

    def output(self, stream: str, data: bytes) -> asyncio.Future[None] | None:
        """Take raw bytes from the worker; returns a future that resolves once the lines they end
        are stored (or given up), or None when they are already (see :meth:`unfinished`)."""
        if self.limit is not None and self.taken - self.dropped + len(data) > self.limit:
            return self._past_limit(stream, data)
        self.taken += len(data)
        return self._take(stream, data)

    def _take(self, stream: str, data: bytes) -> asyncio.Future[None] | None:
        tag = STREAM_TAGS.get(stream, "o")
        data = self._partial.pop(stream, b"") + data
        *complete, rest = data.split(b"\n")
        if len(data) > LOG_LINE_BYTES:  # only then may a line be too long
            complete = [piece for line in complete for piece in _split(line)]
            if len(rest) > LOG_LINE_BYTES:  # a line without its end yet: its last piece waits for more
                *cut, rest = _split(rest)
                complete += cut
        if rest:
            self._partial[stream] = rest
        if complete:
            self._add(tag, _decode(b"\n".join(complete)))
        return self.settled()

    def _past_limit(self, stream: str, data: bytes) -> asyncio.Future[None] | None:
        """Keep what of ``data`` fits in the limit, count the rest; say so when the limit is reached."""
        room = self.limit - (self.taken - self.dropped)
        past = len(data) - room
        reached = not self.dropped
        self.taken += len(data)
        self.dropped += past
        self._unsaid_bytes += past
        self._unsaid_lines += data.count(b"\n", room)
        if room:
            self._take(stream, data[:room])
        if reached:
            self._end_partial_lines()
            self.header(
                f"[this log reached its limit of {size(self.limit)} (max_log): output past it is counted, not stored]"
            )
        return self.settled()

    def unfinished(self, stream: str) -> int:
        """How many of the bytes taken on ``stream`` wait for their line's end (they are not stored yet)."""
        return len(self._partial.get(stream, b""))

    def end_lines(self) -> asyncio.Future[None] | None:
        """End the lines a command left without a newline, and say how much output past the limit
        the log did not keep since it last said so; returns :meth:`settled`."""
        self._end_partial_lines()
        dropped, lines = self._unsaid_bytes, self._unsaid_lines
        if dropped:
            self._unsaid_bytes = self._unsaid_lines = 0
            self.header(
                f"[{dropped:,} bytes ({size(dropped)}, {lines:,} lines) of output past the limit were not stored]"
            )
        return self.settled()

    def _end_partial_lines(self) -> None:
        for stream, rest in list(self._partial.items()):
            self._add(STREAM_TAGS.get(stream, "o"), _decode(rest))
        self._partial.clear()

    def settled(self) -> asyncio.Future[None] | None:
        """A future that resolves once every line taken so far is stored (or given up); None when they are."""
        if self._lines:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            return self._next
        if self._last is not None and not self._last.done():
            return self._last
        return None

    def _gather(self, tag: str, text: str) -> None:
        """Add ``text`` (one line or several) to the lines the next flush stores."""
        if self._redact is not None:
            text = self._redact(text)
        lines = text.split("\n")
        first = self.num_lines + len(self._lines)
        self._lines += lines
        self._tags.append(tag * len(lines))
        self._size += sum(len(line) for line in lines) + len(lines)
        if self._on_lines is not None:
            self._on_lines(first, [(tag, line) for line in lines])

    def _add(self, tag: str, text: str) -> None:
        self._gather(tag, text)
        if self._size >= LOG_CHUNK_BYTES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LOG_CHUNK_DELAY, self.flush)

    def flush(self) -> asyncio.Future[None] | None:
        """Hand the lines gathered so far to the store; returns that write (None: nothing written).

        While lines are being given up and the store is still away, these are given up too; once
        it is back (or when the log closes), the log first says what it lacks.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        marks = False
        if self._gap is not None:
            if not self._store.available:
                self._give_up()
            if self._store.available or self._closed:
                self._gather("h", keepable(self._gap.note()))
                self._gap, marks = None, True
        if not self._lines:
            return None
        first, count = self.num_lines, len(self._lines)
        content, tags = "\n".join(self._lines), "".join(self._tags)
        self.num_lines += count
        self._lines, self._tags, self._size = [], [], 0
        # A note of lost lines waits for the store however long it takes: it is all the log can say.
        wait = math.inf if marks else LOG_WRITE_PATIENCE
        write = self._store.logs.append(self.step, self.name, first, content, tags, wait=wait)
        settled, self._next = self._next or asyncio.get_running_loop().create_future(), None
        self._last = settled
        self.writes.add(write)
        write.add_done_callback(lambda done: self._written(done, first, count, settled, marks))
        return write

    def _give_up(self) -> None:
        """Count the lines gathered now as lost (the store is away): they are never written."""
        count = len(self._lines)
        if not count:
            return
        self._gap.add(self.num_lines, count)
        self.num_lines += count
        self._lines, self._tags, self._size = [], [], 0
        if self._next is not None:
            self._next.set_result(None)
            self._next = None
        self._lose(count)

    def _written(self, write: asyncio.Future, first: int, count: int, settled: asyncio.Future, marks: bool) -> None:
        self.writes.discard(write)
        if not settled.done():
            settled.set_result(None)
        if write.cancelled() or write.exception() is None:
            return
        failure = write.exception()
        self._lose(count)
        if marks:  # the note itself: nothing left to say it with
            log.error(
                "log %r of step %s lost %d line(s), and so did the note of it: %s",
                self.name,
                self.step.id,
                count,
                failure,
            )
            return
        if self._gap is None:
            log.warning(
                "log %r of step %s: %d line(s) could not be stored: %s", self.name, self.step.id, count, failure
            )
            self._gap = _Gap(first, first + count - 1, count, str(failure))
        else:
            self._gap.add(first, count)
        if self._closed:  # no flush comes any more: say it now
            self.flush()

    def _lose(self, count: int) -> None:
        self.lost += count
        if self._on_lost is not None:
            self._on_lost(count)

    def close(self) -> None:
        """End partial lines and hand everything to the store (await :attr:`writes` to be sure)."""
        self._closed = True
        self.end_lines()
        self.flush()
