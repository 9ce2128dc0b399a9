"""File transfers through real processes (Buildbot: interop/test_transfer.py)."""

from __future__ import annotations

import hashlib
import os

from flowbot_worker import protocol

import flowbot
from flowbot import Builder, FileDownload, FileUpload, ForceScheduler, Pipeline, Worker

from ..support import finished_builds, step_log
from .fake_worker import FakeWorker


def test_an_8_mb_file_a_directory_and_a_download_move_intact_and_a_missing_file_fails_cleanly(
    master_factory, worker_factory
):
    master = master_factory("""
        from flowbot import (Pipeline, Worker, Builder, Shell, ForceScheduler, FileUpload, DirectoryUpload,
                             FileDownload)
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["artifacts", "missing"])],
            builders=[
                Builder("artifacts", workers=["w1"], steps=[
                    Shell("head -c 8388608 /dev/urandom > big.bin && mkdir -p site/css && echo hi > site/index.html"
                          " && echo body > site/css/a.css && ln -sf /etc/passwd site/escape", name="make"),
                    FileUpload("big.bin", "uploads/big.bin"),
                    DirectoryUpload("site", "uploads/site"),
                    FileDownload("uploads/big.bin", "copy/big.bin", mode=0o640),
                    Shell("cmp big.bin copy/big.bin && stat -c %a copy/big.bin", name="compare"),
                ]),
                Builder("missing", workers=["w1"], steps=[FileUpload("nope.txt", "uploads/nope.txt")]),
            ],
        )
    """)
    worker = worker_factory(master, "w1", "s")
    master.client.force("artifacts")
    master.client.force("missing")
    builds = {b["builder"]: b for b in finished_builds(master.client, 2, timeout=60)}

    artifacts = builds["artifacts"]
    steps = master.client.request("GET", f"/api/builds/{artifacts['id']}")["steps"]
    assert [s["result"] for s in steps] == ["SUCCESS"] * 5, [
        step_log(master.client, artifacts["id"], i) for i in range(5)
    ]
    uploaded = master.basedir / "uploads" / "big.bin"
    original = worker.basedir / "artifacts" / "build" / "big.bin"
    assert uploaded.stat().st_size == 8 * 1024 * 1024
    assert hashlib.sha256(uploaded.read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest()
    site = master.basedir / "uploads" / "site"
    assert (site / "index.html").read_text() == "hi\n" and (site / "css" / "a.css").read_text() == "body\n"
    assert not os.path.lexists(site / "escape")
    assert "left out what would land outside it: escape (AbsoluteLinkError)" in step_log(
        master.client, artifacts["id"], 2
    )
    assert "640" in step_log(master.client, artifacts["id"], 4)
    assert "uploaded build/big.bin: 8388608 bytes" in step_log(master.client, artifacts["id"], 1)
    # No partial files are left anywhere
    assert [p.name for p in (master.basedir / "uploads").iterdir() if p.name.startswith(".")] == []

    missing = builds["missing"]
    assert missing["result"] == "FAILURE"
    assert "no such file on the worker: build/nope.txt" in step_log(master.client, missing["id"], 0)
    assert not (master.basedir / "uploads" / "nope.txt").exists()


async def test_transfers_that_stop_moving_fail_their_steps_with_the_reason(tmp_path):
    # Given a master that gives up on a transfer after half a second without progress
    (tmp_path / "tool.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["both-ways"])],
        builders=[
            Builder(
                "both-ways",
                workers=["w1"],
                steps=[FileUpload("big.bin", "uploads/big.bin"), FileDownload("tool.bin", "tool.bin")],
            )
        ],
    )
    master = flowbot.Master(pipeline, basedir=tmp_path)
    master.registry.transfer_timeout = 0.5
    await master.start()
    worker = FakeWorker(master.worker_endpoint, "w1", "s")
    try:
        assert (await worker.hello()).type == protocol.WELCOME
        await master.force("both-ways")

        # When the upload sends one chunk and no more
        upload = await worker.expect(protocol.START_COMMAND)
        await worker.send(protocol.FILE_DATA, {"cmd_id": upload.content["cmd_id"], "seq": 0, "final": False}, (b"x",))
        stopped = await worker.expect(protocol.INTERRUPT)
        await worker.send(protocol.FINISHED, {"cmd_id": stopped.content["cmd_id"], "reason": "interrupted"})
        # ... and the download's chunks are never credited
        download = await worker.expect(protocol.START_COMMAND)
        assert download.content["name"] == "download_file"
        stopped = await worker.expect(protocol.INTERRUPT)
        await worker.finish(stopped.content["cmd_id"], reason="interrupted")

        # Then each step fails and says why
        await master.wait_idle(timeout=30)
        (build,) = await master.store.builds(builder="both-ways")
        assert build["result"] == "FAILURE"
        logs = [[line for _, line in await master.store.log_lines(build["id"], step)] for step in (0, 1)]
        assert "upload failed: no progress for 0.5 s" in logs[0]
        assert "download failed: no progress for 0.5 s" in logs[1]
        assert not (tmp_path / "uploads" / "big.bin").exists()
    finally:
        worker.close()
        await master.stop()
