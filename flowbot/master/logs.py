"""A running step's log: bytes from the worker become lines, live events and stored chunks.

Output arrives in arbitrary pieces; lines are cut at ``\\n`` per stream, decoded as UTF-8 (bytes
that are not UTF-8, and characters no database keeps, are replaced, never fatal), shown live to
subscribers at once, and written to the store in chunks of about 64 KiB or every half second,
whichever comes first. Secrets are hidden in all the text that arrives at once before it is cut
into lines, so a secret of several lines is hidden whole when it comes whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..defaults import LOG_CHUNK_BYTES, LOG_CHUNK_DELAY
from ..store import Ref
from ..text import keepable

log = logging.getLogger(__name__)

#: One-letter stream tags, as Buildbot stores them.
STREAM_TAGS = {"stdout": "o", "stderr": "e", "header": "h"}

Append = Callable[[Ref, str, int, str, str], "asyncio.Future[None]"]
#: Called with the number of the first new line and the new ``(tag, line)`` pairs.
LinesListener = Callable[[int, list[tuple[str, str]]], None]


def _decode(data: bytes) -> str:
    return keepable(data.decode("utf-8", "replace"))


class LogWriter:
    """One log of a running step.

    Args:
        step: the store's reference to the step (its id may still be on its way).
        name: the log's name (``stdio`` for a command's output).
        append: the store's ``append_log``; returns the future of the write.
        on_lines: called with the first new line's number and the new ``(tag, line)`` pairs as they
            appear (for live views, which use the number to join them to a stored tail).
        redact: applied to every line first (it hides the secrets the build used).
    """

    def __init__(
        self,
        step: Ref,
        name: str,
        append: Append,
        on_lines: LinesListener | None = None,
        redact: Callable[[str], str] | None = None,
    ):
        self.step = step
        self.name = name
        self._append = append
        self._on_lines = on_lines
        self._redact = redact
        self._partial: dict[str, bytes] = {}
        self._lines: list[str] = []
        self._tags: list[str] = []
        self._size = 0
        self.num_lines = 0  # lines handed to the store so far
        self._timer: asyncio.TimerHandle | None = None
        #: Writes not yet committed; the owner awaits them before the build counts as recorded.
        self.writes: set[asyncio.Future] = set()

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
        """Take raw bytes from the worker; returns the store write to wait for, if one started."""
        tag = STREAM_TAGS.get(stream, "o")
        data = self._partial.pop(stream, b"") + data
        *complete, rest = data.split(b"\n")
        if len(rest) > LOG_CHUNK_BYTES:  # a line without end: cut it rather than hold it all
            complete.append(rest)
            rest = b""
        if rest:
            self._partial[stream] = rest
        if complete:
            return self._add(tag, _decode(b"\n".join(complete)))
        return None

    def _add(self, tag: str, text: str) -> asyncio.Future[None] | None:
        """Add ``text`` (one line or several) to the log."""
        if self._redact is not None:
            text = self._redact(text)
        lines = text.split("\n")
        first = self.num_lines + len(self._lines)
        self._lines += lines
        self._tags.append(tag * len(lines))
        self._size += sum(len(line) for line in lines) + len(lines)
        if self._on_lines is not None:
            self._on_lines(first, [(tag, line) for line in lines])
        if self._size >= LOG_CHUNK_BYTES:
            return self.flush()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LOG_CHUNK_DELAY, self.flush)
        return None

    def flush(self) -> asyncio.Future[None] | None:
        """Hand the lines gathered so far to the store; returns that write."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return None
        first, content, tags = self.num_lines, "\n".join(self._lines), "".join(self._tags)
        self.num_lines += len(self._lines)
        self._lines, self._tags, self._size = [], [], 0
        write = self._append(self.step, self.name, first, content, tags)
        self.writes.add(write)
        write.add_done_callback(self._written)
        return write

    def _written(self, write: asyncio.Future) -> None:
        self.writes.discard(write)
        if not write.cancelled() and write.exception() is not None:
            log.error("log lines could not be stored: %s", write.exception())

    def close(self) -> None:
        """End partial lines and hand everything to the store (await :attr:`writes` to be sure)."""
        for stream, rest in list(self._partial.items()):
            self._add(STREAM_TAGS.get(stream, "o"), _decode(rest))
        self._partial.clear()
        self.flush()
