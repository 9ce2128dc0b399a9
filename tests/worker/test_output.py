"""Tests for ``flowbot_worker.output``: when output leaves, at which offsets, and flow control.

A fake master (:class:`Received`) stands at the other end of ``send`` and rebuilds each stream from
the offsets it is given, so the tests check what the master would end up showing in a step's log.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from flowbot_worker import protocol
from flowbot_worker.output import LONG_LINE, OutputBuffer


@dataclass
class Received:
    """What the master got: every output message, and an event set by each one."""

    messages: list[tuple[str, int, bytes]] = field(default_factory=list)
    window_opened: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    #: When False, messages are lost on the way, as while the worker is disconnected.
    connected: bool = True

    def send(self, kind: str, content: dict, blobs: tuple[bytes, ...]) -> None:
        assert kind == protocol.OUTPUT
        assert content["cmd_id"] == "cmd-1"
        if self.connected:
            self.messages.append((content["stream"], content["offset"], b"".join(blobs)))
            self.arrived.set()

    def on_window_open(self) -> None:
        self.window_opened += 1

    def log(self, stream: str = "stdout") -> bytes:
        """The stream as the master would store it; fails on a gap (an overlap just rewrites)."""
        data = bytearray()
        for name, offset, chunk in self.messages:
            if name == stream:
                assert offset <= len(data), f"gap in {stream}: got offset {offset} with {len(data)} bytes held"
                data[offset : offset + len(chunk)] = chunk
        return bytes(data)

    def held(self) -> dict[str, int]:
        """Per stream, how many bytes the master holds (what it acknowledges)."""
        return {name: len(self.log(name)) for name in {m[0] for m in self.messages}}


@pytest.fixture
def received() -> Received:
    return Received()


@pytest.fixture
def make_buffer(received: Received):
    """OutputBuffers sending to ``received``; closed at teardown so no flush timer outlives a test."""
    made: list[OutputBuffer] = []

    def make(**options: float) -> OutputBuffer:
        buffer = OutputBuffer("cmd-1", received.send, received.on_window_open, **options)
        made.append(buffer)
        return buffer

    yield make
    for buffer in made:
        buffer.close()


# -- when output leaves ---------------------------------------------------------------------------


async def test_output_is_sent_once_the_size_threshold_is_reached(make_buffer, received: Received) -> None:
    buffer = make_buffer(flush_bytes=10, flush_delay=60)

    buffer.write("stdout", b"1234")
    buffer.write("stdout", b"5678")
    assert received.messages == []

    buffer.write("stdout", b"90")

    assert received.messages == [("stdout", 0, b"1234567890")]


async def test_output_below_the_threshold_is_sent_after_the_delay(make_buffer, received: Received) -> None:
    # Given a buffer that flushes 50 ms after the first unsent byte
    loop = asyncio.get_running_loop()
    buffer = make_buffer(flush_bytes=1000, flush_delay=0.05)

    # When a few small writes arrive together
    written_at = loop.time()
    buffer.write("stdout", b"a")
    buffer.write("stderr", b"b")
    buffer.write("stdout", b"c")
    assert received.messages == []
    await asyncio.wait_for(received.arrived.wait(), 5)

    # Then they leave together, one message per stream, no earlier than the delay
    assert loop.time() - written_at >= 0.045
    assert sorted(received.messages) == [("stderr", 0, b"b"), ("stdout", 0, b"ac")]


async def test_a_steady_trickle_of_output_still_leaves_while_it_goes_on(make_buffer, received: Received) -> None:
    # Given a 0.1 s flush delay counted from the oldest unsent byte, not the newest
    buffer = make_buffer(flush_bytes=1000, flush_delay=0.1)

    # When a step prints a byte every 30 ms for a third of a second
    for _ in range(10):
        buffer.write("stdout", b".")
        await asyncio.sleep(0.03)  # the step's own pace, not a wait for the buffer
    arrived_while_printing = len(received.messages)
    buffer.flush()

    # Then the master saw some of it before the step stopped printing, and all of it after
    assert arrived_while_printing >= 1
    assert received.log() == b"." * 10


async def test_a_size_flush_also_sends_what_waited_on_other_streams(make_buffer, received: Received) -> None:
    buffer = make_buffer(flush_bytes=10, flush_delay=60)
    buffer.write("stderr", b"warning\n")

    buffer.write("stdout", b"xx")

    assert sorted(received.messages) == [("stderr", 0, b"warning\n"), ("stdout", 0, b"xx")]


def test_explicit_flush_sends_pending_output_and_nothing_when_empty(make_buffer, received: Received) -> None:
    buffer = make_buffer(flush_bytes=1)
    buffer.flush()
    assert received.messages == []

    buffer.write("stdout", b"done\n")
    buffer.flush()

    assert received.messages == [("stdout", 0, b"done\n")]


async def test_a_closed_buffer_sends_nothing_by_itself(make_buffer, received: Received) -> None:
    buffer = make_buffer(flush_bytes=1000, flush_delay=0.02)
    buffer.write("stdout", b"late")

    buffer.close()
    await asyncio.sleep(0.1)  # no event marks "nothing happened": give the timer ample time to fire

    assert received.messages == []


# -- offsets --------------------------------------------------------------------------------------


def test_offsets_start_at_zero_and_advance_per_stream(make_buffer, received: Received) -> None:
    buffer = make_buffer(flush_bytes=1)

    buffer.write("stdout", b"abc")
    buffer.write("stderr", b"E")
    buffer.write("stdout", b"de")
    buffer.write("stderr", b"FG")

    assert received.messages == [("stdout", 0, b"abc"), ("stderr", 0, b"E"), ("stdout", 3, b"de"), ("stderr", 1, b"FG")]
    assert received.log("stdout") == b"abcde"
    assert buffer.offsets() == {"stdout": [0, 5], "stderr": [0, 3]}


def test_acks_forget_what_the_master_holds(make_buffer) -> None:
    buffer = make_buffer(flush_bytes=1)
    buffer.write("stdout", b"0123456789")
    buffer.write("stderr", b"abc")

    buffer.ack({"stdout": 4})

    assert buffer.offsets() == {"stdout": [4, 10], "stderr": [0, 3]}
    assert buffer.in_flight == 6 + 3


@pytest.mark.parametrize(
    ("ack", "held"),
    [
        ({"stdout": 2}, [4, 10]),  # behind what was already acknowledged
        ({"stdout": 99}, [10, 10]),  # beyond what was sent: no more than everything
        ({"stdout": "7"}, [4, 10]),  # not an offset
        ({"other": 7}, [4, 10]),  # a stream that never wrote
        ({}, [4, 10]),
    ],
)
def test_odd_acks_never_move_offsets_backwards_or_past_what_was_sent(make_buffer, ack: dict, held: list[int]) -> None:
    buffer = make_buffer(flush_bytes=1)
    buffer.write("stdout", b"0123456789")
    buffer.ack({"stdout": 4})

    buffer.ack(ack)

    assert buffer.offsets() == {"stdout": held}


def test_output_after_an_ack_continues_at_the_next_offset(make_buffer, received: Received) -> None:
    buffer = make_buffer(flush_bytes=1)
    buffer.write("stdout", b"abc")
    buffer.ack({"stdout": 3})

    buffer.write("stdout", b"def")

    assert received.messages[-1] == ("stdout", 3, b"def")
    assert buffer.offsets() == {"stdout": [3, 6]}


# -- window ---------------------------------------------------------------------------------------


def test_full_turns_on_past_the_window(make_buffer) -> None:
    buffer = make_buffer(flush_bytes=1, window=10)

    buffer.write("stdout", b"x" * 6)
    buffer.write("stderr", b"x" * 4)
    assert not buffer.full  # exactly a window in flight is allowed

    buffer.write("stdout", b"x")
    assert buffer.full


async def test_unsent_output_counts_towards_the_window(make_buffer) -> None:
    buffer = make_buffer(flush_bytes=1000, flush_delay=60, window=10)

    buffer.write("stdout", b"x" * 11)

    assert buffer.full


def test_window_opens_once_acks_make_room(make_buffer, received: Received) -> None:
    # Given a window of 10 bytes with 15 in flight
    buffer = make_buffer(flush_bytes=1, window=10)
    buffer.write("stdout", b"x" * 15)
    assert buffer.full

    # When the master acknowledges too little, then enough
    buffer.ack({"stdout": 4})
    assert (buffer.full, received.window_opened) == (True, 0)
    buffer.ack({"stdout": 5})

    # Then the command hears once that it may read again
    assert (buffer.full, received.window_opened) == (False, 1)
    buffer.ack({"stdout": 15})
    assert received.window_opened == 1


def test_acks_while_not_full_do_not_announce_an_open_window(make_buffer, received: Received) -> None:
    buffer = make_buffer(flush_bytes=1, window=10)
    buffer.write("stdout", b"x" * 8)

    buffer.ack({"stdout": 8})

    assert received.window_opened == 0


# -- replay after a reconnect ---------------------------------------------------------------------


def test_replay_resends_exactly_the_missing_bytes(make_buffer, received: Received) -> None:
    # Given output of which the master got the first part, then the link dropped
    buffer = make_buffer(flush_bytes=1)
    buffer.write("stdout", b"hello ")
    buffer.write("stderr", b"warn ")
    buffer.ack(received.held())
    buffer.write("stdout", b"wor")
    received.connected = False
    buffer.write("stdout", b"ld\n")
    buffer.write("stderr", b"err\n")
    received.connected = True
    before = len(received.messages)

    # When the worker reconnects and the master says what it holds
    buffer.replay(received.held())

    # Then only the missing bytes are re-sent, at their offsets, and the master's log is complete
    assert received.messages[before:] == [("stdout", 9, b"ld\n"), ("stderr", 5, b"err\n")]
    assert received.log("stdout") == b"hello world\n"
    assert received.log("stderr") == b"warn err\n"


def test_replay_for_a_stream_the_master_never_saw_sends_all_that_is_held(make_buffer, received: Received) -> None:
    buffer = make_buffer(flush_bytes=1)
    buffer.write("stdout", b"abcdef")
    buffer.ack({"stdout": 2})
    before = len(received.messages)

    buffer.replay({})

    assert received.messages[before:] == [("stdout", 2, b"cdef")]


def test_replay_sends_nothing_when_the_master_is_up_to_date(make_buffer, received: Received) -> None:
    buffer = make_buffer(flush_bytes=1)
    buffer.write("stdout", b"abc")
    before = len(received.messages)

    buffer.replay({"stdout": 3})
    buffer.replay({"stdout": 50})

    assert len(received.messages) == before


async def test_replay_leaves_unsent_output_to_its_flush(make_buffer, received: Received) -> None:
    # Given sent-but-lost bytes followed by bytes still waiting for the flush delay
    buffer = make_buffer(flush_bytes=4, flush_delay=0.02)
    received.connected = False
    buffer.write("stdout", b"lost")
    received.connected = True
    buffer.write("stdout", b"ok")

    # When the worker replays
    buffer.replay({})

    # Then only what was sent is re-sent, and the rest follows with its flush, in order
    assert received.messages == [("stdout", 0, b"lost")]
    received.arrived.clear()
    await asyncio.wait_for(received.arrived.wait(), 5)
    assert received.messages == [("stdout", 0, b"lost"), ("stdout", 4, b"ok")]
    assert received.log() == b"lostok"


async def test_the_lines_acknowledged_are_counted_until_one_is_too_long_to_count_as_the_master_does(make_buffer) -> None:
    # Given output of short lines, a line begun, and a line of 64 KiB on stderr
    buffer = make_buffer()
    buffer.write("stdout", b"one\ntwo\nthr")
    buffer.write("stderr", b"x" * LONG_LINE + b"\nshort\n")
    buffer.flush()
    assert buffer.lines() == {"stdout": 0, "stderr": 0}

    # When the master acknowledges part of it, in the middle of a line, then the rest
    buffer.ack({"stdout": 6, "stderr": 3})
    assert buffer.lines() == {"stdout": 1, "stderr": 0}
    buffer.write("stdout", b"ee\nfour\n")
    buffer.flush()
    buffer.ack({"stdout": 19, "stderr": LONG_LINE + 7})

    # Then the lines ended below the acknowledged offsets are counted, but for a stream with a line
    # the master may have kept in pieces
    assert buffer.lines() == {"stdout": 4, "stderr": None}
