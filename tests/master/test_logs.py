"""A running step's log (``flowbot/master/logs.py``): lines cut and marked, output past the limit
counted and said, written into a real store and read back as the web page reads it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from flowbot.defaults import LOG_LINE_BYTES, LOG_LINE_CUT
from flowbot.master.logs import LogWriter, size
from flowbot.records import BuildsetSpec, SourceStamp
from flowbot.store import Ref, Store

NOW = 1_700_000_000.0


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield store
    await store.close()


@pytest.fixture
async def step(store: Store) -> tuple[int, Ref]:
    """A running build's first step: its build id and its reference."""
    spec = BuildsetSpec(
        scheduler="force", builders=("unit",), sourcestamps=(SourceStamp(repository="r", branch="main"),)
    )
    (request,) = await store.requests.add_buildset(spec, NOW)
    build, step = Ref(), Ref()
    await asyncio.gather(
        store.builds.start(request, 1, "w1", NOW, "master", build), store.steps.start(build, 0, "s", NOW, step)
    )
    return build.id, step


async def stored(store: Store, build_id: int, writer: LogWriter) -> list[tuple[str, str]]:
    writer.close()
    await asyncio.gather(*writer.writes)
    return await store.logs.lines(build_id, 0)


async def test_a_long_line_is_split_in_marked_pieces_never_inside_a_character(store, step):
    # Given a line of 150,000 bytes, most of them two-byte characters, arriving in small pieces
    build_id, ref = step
    writer = LogWriter(ref, "stdio", store)
    line = ("é" * 70_000 + "x" * 10_000).encode()
    for start in range(0, len(line), 4096):
        writer.output("stdout", line[start : start + 4096])
    writer.output("stdout", b"\nnext\n")

    # Then it is stored in pieces of at most LOG_LINE_BYTES (and the mark), each but the last marked,
    # and together they are the line
    lines = [text for _, text in await stored(store, build_id, writer)]
    *pieces, last = lines[:-1]
    assert lines[-1] == "next" and len(pieces) == 2
    assert all(piece.endswith(LOG_LINE_CUT) for piece in pieces) and not last.endswith(LOG_LINE_CUT)
    assert all(len(piece.removesuffix(LOG_LINE_CUT).encode()) <= LOG_LINE_BYTES for piece in pieces)
    assert "".join(piece.removesuffix(LOG_LINE_CUT) for piece in pieces) + last == line.decode()


async def test_a_long_line_that_arrives_whole_is_split_too(store, step):
    build_id, ref = step
    writer = LogWriter(ref, "stdio", store)
    writer.output("stderr", b"a" * (2 * LOG_LINE_BYTES + 5) + b"\n")
    assert await stored(store, build_id, writer) == [
        ("e", "a" * LOG_LINE_BYTES + LOG_LINE_CUT),
        ("e", "a" * LOG_LINE_BYTES + LOG_LINE_CUT),
        ("e", "aaaaa"),
    ]


async def test_output_past_the_limit_is_counted_not_stored_and_the_log_says_how_much(store, step):
    # Given a log that keeps 100 bytes
    build_id, ref = step
    shown: list[tuple[str, str]] = []
    writer = LogWriter(ref, "stdio", store, lambda first, lines: shown.extend(lines), limit=100)

    # When a command prints 10 lines of 18 bytes, then 5,000 more lines, and ends
    writer.header("shell: flood")
    for n in range(10):
        writer.output("stdout", f"line {n:02} .........\n".encode())
    writer.output("stdout", b"more\n" * 5000)
    writer.end_lines()
    writer.header("program finished with exit code 0")

    # Then the first 100 bytes are kept (the sixth line cut where the limit fell), then the notice,
    # then how much was not kept, then the exit line; what was not kept was never shown either
    lines = await stored(store, build_id, writer)
    assert lines == [
        ("h", "shell: flood"),
        *[("o", f"line {n:02} .........") for n in range(5)],
        ("o", "line 05 .."),
        ("h", "[this log reached its limit of 100 bytes (max_log): output past it is counted, not stored]"),
        ("h", "[25,080 bytes (24.5 KiB, 5,005 lines) of output past the limit were not stored]"),
        ("h", "program finished with exit code 0"),
    ]
    assert shown == lines
    assert (writer.taken, writer.dropped) == (25_180, 25_080)


async def test_a_log_without_a_limit_keeps_everything(store, step):
    build_id, ref = step
    writer = LogWriter(ref, "stdio", store)
    writer.output("stdout", b"x\n" * 100_000)
    assert len(await stored(store, build_id, writer)) == 100_000 and writer.dropped == 0


async def test_the_last_line_without_its_newline_is_ended_before_what_follows(store, step):
    build_id, ref = step
    writer = LogWriter(ref, "stdio", store)
    writer.output("stdout", b"first\nno newline")
    writer.end_lines()
    writer.header("program finished with exit code 0")
    assert await stored(store, build_id, writer) == [
        ("o", "first"),
        ("o", "no newline"),
        ("h", "program finished with exit code 0"),
    ]


def test_sizes_read_as_people_say_them():
    assert [size(n) for n in (900, 1024, 1536, 64 * 1024 * 1024, 3 * 1024**3)] == [
        "900 bytes",
        "1 KiB",
        "1.5 KiB",
        "64 MiB",
        "3 GiB",
    ]
