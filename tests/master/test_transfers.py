"""The master's ends of file transfers keep the event loop free while they touch the disk."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
from collections.abc import AsyncIterator

import pytest

from flowbot.master.tasks import Tasks
from flowbot.master.transfers import ReceiveFile, SendFile
from flowbot.steps.base import CommandResult


@pytest.fixture
async def loop_turns() -> AsyncIterator[list[str]]:
    """A record of the loop's turns: other work appends ``"turn"`` each time it gets the loop."""
    record: list[str] = []

    async def other_work() -> None:
        while True:
            record.append("turn")
            await asyncio.sleep(0)

    task = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    yield record
    task.cancel()


def _tarball(files: dict[str, bytes]) -> bytes:
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return packed.getvalue()


async def test_an_uploaded_directory_is_unpacked_while_the_loop_serves_others(tmp_path, loop_turns):
    # Given a directory upload that has arrived whole
    files = {f"page{i}.html": os.urandom(4096) for i in range(200)}
    tarball = _tarball(files)
    receiver = ReceiveFile(tmp_path / "site", directory=True)
    receiver.file_data({"seq": 0}, tarball)
    result = CommandResult(0, data={"size": len(tarball), "sha256": hashlib.sha256(tarball).hexdigest()})

    # When it is put in place
    turns_before = len(loop_turns)
    summary = await receiver.finish(result)

    # Then other work had the loop meanwhile, and every file landed
    assert len(loop_turns) > turns_before
    assert summary.startswith(f"{len(tarball)} bytes")
    assert {p.name: p.read_bytes() for p in (tmp_path / "site").iterdir()} == files


async def test_a_download_is_read_while_the_loop_serves_others(tmp_path, loop_turns):
    # Given a file to send in 16 chunks, with credit for all of them
    content = os.urandom(16 * 1024 + 10)
    (tmp_path / "tool.bin").write_bytes(content)
    sender = SendFile(tmp_path / "tool.bin", spawn=Tasks().spawn, chunk=1024, window=100)
    chunks: list[bytes] = []
    done = asyncio.Event()

    def send(header: dict, data: bytes) -> None:
        loop_turns.append("chunk")
        chunks.append(data)
        if header["final"]:
            done.set()

    # When it is sent
    sender.start(send)
    await asyncio.wait_for(done.wait(), 10)

    # Then other work had the loop between any two chunks, and the chunks make up the file
    events = loop_turns[loop_turns.index("chunk") :]
    assert ["chunk", "chunk"] not in [events[i : i + 2] for i in range(len(events) - 1)]
    assert b"".join(chunks) == content
