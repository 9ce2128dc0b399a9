"""Buffering, flushing and flow control for one command's output.

Output is sent in ``output`` messages, flushed by size or by age, each carrying its stream and the
byte offset it starts at. Bytes stay here until the master acknowledges them, which it does only
once they are stored: a worker that reconnects replays what the master has not yet got, and what
a master has got but not stored (its database away) is still here for whoever asks for it. A
command may not have more than a window of unacknowledged bytes in flight: past that window it
stops reading its process's pipes, so a step that prints gigabytes, or prints while the master
cannot store, blocks in ``write`` instead of growing anyone's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from . import protocol
from .bodies import Output
from .defaults import OUTPUT_FLUSH_BYTES, OUTPUT_FLUSH_DELAY, OUTPUT_WINDOW

Send = Callable[[str, dict, tuple[bytes, ...]], None]


#: A line this long or longer may be kept by the master in pieces, each a line of its log.
LONG_LINE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Tail:
    """What a worker holds of one stream of a command's output: the bytes from ``acked`` on (the
    master has acknowledged those below), and the lines ended below ``acked`` (None: one was too
    long to count as the master does)."""

    acked: int
    lines: int | None
    data: bytes


class _Stream:
    __slots__ = ("acked_lines", "acked_upto", "carry", "pending", "unacked")

    def __init__(self) -> None:
        self.pending = bytearray()  # read from the process, not yet sent
        self.unacked = bytearray()  # sent, not yet acknowledged
        self.acked_upto = 0  # offset of unacked[0]
        #: Lines ended below ``acked_upto``; None once one of them was long (LONG_LINE).
        self.acked_lines: int | None = 0
        self.carry = 0  # bytes of the line that runs on at ``acked_upto``

    def forget(self, count: int) -> None:
        """Drop the first ``count`` unacknowledged bytes (the master has stored them), counting their lines."""
        if self.acked_lines is not None:
            long, self.carry = _long_line(self.carry, self.unacked, count)
            self.acked_lines = None if long else self.acked_lines + self.unacked.count(b"\n", 0, count)
        del self.unacked[:count]
        self.acked_upto += count

    @property
    def sent_upto(self) -> int:
        return self.acked_upto + len(self.unacked)


class OutputBuffer:
    """The outgoing output of one command.

    Args:
        cmd_id: the command the output belongs to.
        send: how to send a message to the master (a no-op while disconnected).
        on_window_open: called when acknowledgements make room after the window was full.
    """

    def __init__(
        self,
        cmd_id: str,
        send: Send,
        on_window_open: Callable[[], None],
        *,
        flush_bytes: int = OUTPUT_FLUSH_BYTES,
        flush_delay: float = OUTPUT_FLUSH_DELAY,
        window: int = OUTPUT_WINDOW,
    ):
        self.cmd_id = cmd_id
        self._send = send
        self._on_window_open = on_window_open
        self.flush_bytes = flush_bytes
        self.flush_delay = flush_delay
        self.window = window
        self._streams: dict[str, _Stream] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._buffered = 0

    def write(self, stream: str, data: bytes) -> None:
        """Take bytes the process wrote; they leave by size or after ``flush_delay``."""
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream()
        s.pending += data
        self._buffered += len(data)
        if self._buffered >= self.flush_bytes:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_delay, self.flush)

    def flush(self) -> None:
        """Send everything pending now (called by size, by timer, and when the process ends)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for name, s in self._streams.items():
            if s.pending:
                data = bytes(s.pending)
                content = Output(self.cmd_id, name, s.sent_upto, data).encode()
                s.unacked += data
                s.pending.clear()
                self._send(protocol.OUTPUT, content, (data,))
        self._buffered = 0

    @property
    def full(self) -> bool:
        """True while more than a window of bytes waits for acknowledgement."""
        return self.in_flight > self.window

    @property
    def in_flight(self) -> int:
        return sum(len(s.unacked) + len(s.pending) for s in self._streams.values())

    def ack(self, offsets: dict[str, int]) -> None:
        """The master holds every byte below ``offsets[stream]``; forget them."""
        was_full = self.full
        for name, offset in offsets.items():
            s = self._streams.get(name)
            if s is None or not isinstance(offset, int):
                continue
            s.forget(min(max(offset - s.acked_upto, 0), len(s.unacked)))
        if was_full and not self.full:
            self._on_window_open()

    def offsets(self) -> dict[str, list[int]]:
        """Per stream, the range of bytes still held: ``[acked_upto, sent_upto]`` (for hello)."""
        return {name: [s.acked_upto, s.sent_upto] for name, s in self._streams.items()}

    def lines(self) -> dict[str, int | None]:
        """Per stream, the lines ended below the acknowledged offset (None: one was too long to
        count as the master does), so a master taking the command up knows which of its stored
        lines come again (for hello)."""
        return {name: s.acked_lines for name, s in self._streams.items()}

    def tails(self) -> dict[str, Tail]:
        """Per stream, what is held and sent (for the worker's journal, once the command has ended)."""
        return {name: Tail(s.acked_upto, s.acked_lines, bytes(s.unacked)) for name, s in self._streams.items()}

    def restore(self, tails: dict[str, Tail]) -> None:
        """Hold ``tails`` as sent and unacknowledged (a command read back from the journal)."""
        for name, tail in tails.items():
            s = self._streams[name] = _Stream()
            s.acked_upto, s.acked_lines, s.unacked = tail.acked, tail.lines, bytearray(tail.data)

    def replay(self, offsets: dict[str, int]) -> None:
        """Re-send what the master is missing after a reconnect, from the offsets it holds."""
        for name, s in self._streams.items():
            start = offsets.get(name, 0)
            if not isinstance(start, int) or start >= s.sent_upto:
                continue
            start = max(start, s.acked_upto)
            data = bytes(s.unacked[start - s.acked_upto :])
            self._send(protocol.OUTPUT, Output(self.cmd_id, name, start, data).encode(), (data,))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _long_line(carry: int, data: bytearray, end: int) -> tuple[bool, int]:
    """Whether ``data[:end]``, after ``carry`` bytes of a line begun before it, has a line of
    :data:`LONG_LINE` bytes or more; and the bytes of the line that runs on at ``end``. Looks at
    each stretch of LONG_LINE bytes once, so it costs little however many lines there are."""
    start = -carry  # where the line being looked at began
    while start + LONG_LINE <= end:
        newline = data.rfind(b"\n", max(start, 0), start + LONG_LINE)
        if newline < 0:
            return True, 0
        start = newline + 1
    newline = data.rfind(b"\n", max(start, 0), end)
    if newline >= 0:
        start = newline + 1
    return False, end - start
