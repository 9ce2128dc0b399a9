"""File transfers through real processes (Buildbot: interop/test_transfer.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from flowbot_worker import protocol

import flowbot
from flowbot import Builder, FileDownload, FileUpload, ForceScheduler, Pipeline, Worker
from flowbot.record_json import build_json

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
            artifacts="uploads",
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
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "tool.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        artifacts="uploads",
        schedulers=[ForceScheduler("force", builders=["both-ways"])],
        builders=[
            Builder(
                "both-ways",
                workers=["w1"],
                steps=[FileUpload("big.bin", "uploads/big.bin"), FileDownload("uploads/tool.bin", "tool.bin")],
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
        (build,) = [build_json(b) for b in await master.store.builds.query(builder="both-ways")]
        assert build["result"] == "FAILURE"
        logs = [[line for _, line in await master.store.logs.lines(build["id"], step)] for step in (0, 1)]
        assert "upload failed: no progress for 0.5 s" in logs[0]
        assert "download failed: no progress for 0.5 s" in logs[1]
        assert not (tmp_path / "uploads" / "big.bin").exists()
    finally:
        worker.close()
        await master.stop()


CONFINED = """\
from flowbot import (AnyBranchScheduler, Builder, DirectoryUpload, FileDownload, FileUpload, ForceScheduler,
                     Interpolate, Pipeline, Shell, Worker)
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[AnyBranchScheduler("on-change", builders=["fetch", "publish", "site"]),
                ForceScheduler("force", builders=["fetch", "publish", "site"])],
    builders=[
        Builder("fetch", workers=["w1"], collapse_requests=False, steps=[
            FileDownload(Interpolate("artifacts/%(prop:branch)s"), "got", name="download"),
        ]),
        Builder("publish", workers=["w1"], collapse_requests=False, steps=[
            Shell("echo overwritten > out.txt", name="make"),
            FileUpload("out.txt", Interpolate("artifacts/%(prop:branch)s"), name="upload"),
        ]),
        Builder("site", workers=["w1"], collapse_requests=False, steps=[
            Shell("mkdir -p site && echo page > site/pipeline.py", name="make"),
            DirectoryUpload("site", Interpolate("artifacts/%(prop:branch)s"), name="upload"),
        ]),
    ],
)
"""


def test_a_changes_branch_cannot_move_the_masters_own_files_through_a_transfer(master_factory, worker_factory):
    # Given a master with its pipeline, its CURVE key and its database beside the artifacts directory,
    # which holds a symlink to the pipeline and one to the master's directory (however they got there)
    master = master_factory(CONFINED)
    subprocess.run([sys.executable, "-m", "flowbot", "create-key", str(master.basedir)], check=True, timeout=60)
    worker = worker_factory(master, "w1", "s")
    own = {name: (master.basedir / name).read_bytes() for name in ("pipeline.py", "master.key_secret")}
    database = (master.basedir / "state.sqlite").stat().st_ino
    listed = sorted(p.name for p in master.basedir.iterdir())
    artifacts = master.basedir / "artifacts"
    artifacts.mkdir()
    (artifacts / "release.txt").write_text("the artifact\n")
    (artifacts / "pipeline-link").symlink_to("../pipeline.py")
    (artifacts / "up").symlink_to("..")

    # When changes arrive on branches named to reach them, through .. and through the symlinks
    hostile = ["../pipeline.py", "../master.key_secret", "../state.sqlite", "pipeline-link", "up/pipeline.py", "up"]
    for branch in hostile:
        master.client.sendchange(branch=branch, revision="r", author="mallory", comments="", files=["x"])
    builds = finished_builds(master.client, 3 * len(hostile), timeout=90)
    result = {(b["builder"], b["branch"]): b for b in builds}

    # Then no transfer reached them: every one was refused and said why, and the master's files are as they were
    for branch in hostile:
        for builder in ("fetch", "publish", "site"):
            build = result[builder, branch]
            text = step_log(master.client, build["id"], 0 if builder == "fetch" else 1)
            assert build["result"] == "FAILURE", (builder, branch, text)
            if ".." in branch:
                assert f"'artifacts/{branch}' leads out of the master's artifacts directory" in text, text
            else:
                assert "goes through a symbolic link" in text, (builder, branch, text)
    assert {name: (master.basedir / name).read_bytes() for name in own} == own
    assert (master.basedir / "state.sqlite").stat().st_ino == database
    assert sorted(p.name for p in master.basedir.iterdir() if p.name != "artifacts") == listed
    assert os.readlink(artifacts / "pipeline-link") == "../pipeline.py" and os.readlink(artifacts / "up") == ".."

    # While ordinary names move files in and out of the artifacts directory
    for builder, branch in (("fetch", "release.txt"), ("publish", "out/published.txt"), ("site", "site")):
        master.client.force(builder, branch=branch)
    builds = finished_builds(master.client, 3 * len(hostile) + 3, timeout=60)[-3:]
    assert [b["result"] for b in builds] == ["SUCCESS"] * 3
    assert (worker.basedir / "fetch" / "build" / "got").read_text() == "the artifact\n"
    assert (artifacts / "out" / "published.txt").read_text() == "overwritten\n"
    assert (artifacts / "site" / "pipeline.py").read_text() == "page\n"
