"""The master's ends of file transfers keep the event loop free while they touch the disk."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from flowbot_worker.bodies import FileData

from flowbot.errors import TransferError
from flowbot.master.tasks import Tasks
from flowbot.master.transfers import ReceiveFile, SendFile, master_file
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
    receiver.file_data(FileData("c1", 0, True, tarball))
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
    sender = SendFile(
        tmp_path / "tool.bin", (tmp_path / "tool.bin").open("rb"), spawn=Tasks().spawn, chunk=1024, window=100
    )
    chunks: list[bytes] = []
    done = asyncio.Event()

    def send(seq: int, final: bool, data: bytes) -> None:
        loop_turns.append("chunk")
        chunks.append(data)
        if final:
            done.set()

    # When it is sent
    sender.start(send)
    await asyncio.wait_for(done.wait(), 10)

    # Then other work had the loop between any two chunks, and the chunks make up the file
    events = loop_turns[loop_turns.index("chunk") :]
    assert ["chunk", "chunk"] not in [events[i : i + 2] for i in range(len(events) - 1)]
    assert b"".join(chunks) == content


def test_paths_on_the_master_lead_into_the_artifacts_directory_and_nowhere_else(tmp_path):
    # Given a master's directory with its own files, an artifacts directory, and symbolic links in it
    (tmp_path / "pipeline.py").write_text("secrets\n")
    artifacts = tmp_path / "artifacts"
    (artifacts / "reports").mkdir(parents=True)
    (artifacts / "pipeline").symlink_to("../pipeline.py")
    (artifacts / "up").symlink_to("..")
    (artifacts / "reports" / "inner").symlink_to("..")

    def where(path: str, root: str = "artifacts") -> Path:
        return master_file(path, root=root, base=tmp_path, own=[tmp_path])

    # Then paths inside it, relative to the master's directory or absolute, are where they say
    assert where("artifacts/app.tar.gz") == artifacts / "app.tar.gz"
    assert where(str(artifacts / "reports" / "new" / "r.xml")) == artifacts / "reports" / "new" / "r.xml"
    assert where("artifacts/a.txt", root=str(artifacts)) == artifacts / "a.txt"
    # ... and every other is refused, saying why
    refused = {
        "pipeline.py": "leads out of the master's artifacts directory",
        "artifacts/../pipeline.py": "leads out of the master's artifacts directory",
        "/etc/passwd": "leads out of the master's artifacts directory",
        "artifacts/reports/../x": "holds '..'",
        "artifacts": "is the artifacts directory itself",
        "artifacts/pipeline": "goes through a symbolic link",
        "artifacts/up/pipeline.py": "goes through a symbolic link",
        "artifacts/reports/inner/x": "goes through a symbolic link",
    }
    for path, why in refused.items():
        with pytest.raises(TransferError, match=why):
            where(path)


def test_an_artifacts_directory_that_holds_the_masters_own_files_takes_no_transfer(tmp_path):
    (tmp_path / "master").mkdir()
    (tmp_path / "keys").mkdir()
    # An artifacts directory above the master's, or one that holds its key, is refused for any path
    for root, own in ((str(tmp_path), [tmp_path / "master"]), ("..", [tmp_path / "keys" / "master.key_secret"])):
        with pytest.raises(TransferError, match=r"holds .*, which is the master's own"):
            master_file(str(tmp_path / "x.txt"), root=root, base=tmp_path / "master", own=own)


async def test_a_download_is_never_read_through_a_symbolic_link(tmp_path):
    # Given a file that became a symbolic link to another after its path was checked
    (tmp_path / "pipeline.py").write_text("secrets\n")
    (tmp_path / "tool.bin").symlink_to(tmp_path / "pipeline.py")

    # Then it is not opened
    with pytest.raises(TransferError, match=r"cannot read .*tool\.bin on the master"):
        await SendFile.open(tmp_path / "tool.bin", Tasks().spawn)
