"""The worker link turns away what it must: a retired secret, frames too large, a flood of refusals."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import zmq
import zmq.asyncio
from flowbot_worker import protocol
from flowbot_worker.defaults import MAX_BLOB_BYTES, MAX_FRAME_BYTES
from zmq.utils.monitor import parse_monitor_message

import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker

from ..support import WorkerProcess, finished_builds, step_log
from .fake_worker import FakeWorker, until


def _pipeline(**secrets: str) -> Pipeline:
    return Pipeline(
        workers=[Worker(name, secret=secret) for name, secret in secrets.items()],
        schedulers=[ForceScheduler("force", builders=["b"])],
        builders=[Builder("b", workers=["w1"], steps=[Shell("echo built")])],
    )


async def _answer(master: flowbot.Master, name: str, secret: str) -> str:
    """What the master answers a hello from ``name`` signed with ``secret``."""
    worker = FakeWorker(master.worker_endpoint, name, secret)
    try:
        answer = await worker.hello()
        if answer.type == protocol.WELCOME:
            await worker.send(protocol.DISCONNECT, {"reason": "it only came to say hello"})
        return answer.type
    finally:
        worker.close()


def _worker_process(master: flowbot.Master, secret: str, where: Path) -> WorkerProcess:
    where.mkdir()
    return WorkerProcess(master.worker_endpoint, "w1", secret, where / "w1")


async def test_a_changed_worker_secret_takes_effect_at_reconfigure(tmp_path):
    # Given w1 connected with its secret, and w2 known by its own
    master = flowbot.Master(_pipeline(w1="old", w2="two"), db=f"sqlite:///{tmp_path / 'm.sqlite'}")
    await master.start()
    workers = [_worker_process(master, "old", tmp_path / "old")]
    try:
        await until(lambda: "w1" in master.registry.connections, what="w1 to connect")
        assert await _answer(master, "w2", "two") == protocol.WELCOME

        # When the pipeline gives w1 a new secret and drops w2
        await master.reconfigure(_pipeline(w1="new"))

        # Then the worker still signing with the old secret is disconnected, and refused when it comes back
        assert "w1" not in master.registry.connections
        await until(lambda: "bad signature" in workers[0].log(), what="the old worker to hear why")
        assert await _answer(master, "w1", "old") == protocol.DISCONNECT
        # ... while a worker with the new secret is welcomed and builds
        workers.append(_worker_process(master, "new", tmp_path / "new"))
        await until(lambda: "w1" in master.registry.connections, what="the new w1 to connect")
        await master.force("b")
        await master.wait_idle(timeout=30)
        (build,) = await master.store.builds(builder="b")
        assert build["result"] == "SUCCESS"

        # And w2 is refused until a pipeline declares it again, then only with the secret declared then
        assert await _answer(master, "w2", "two") == protocol.DISCONNECT
        await master.reconfigure(_pipeline(w1="new", w2="three"))
        assert await _answer(master, "w2", "two") == protocol.DISCONNECT
        assert await _answer(master, "w2", "three") == protocol.WELCOME
    finally:
        for worker in workers:
            worker.stop()
        await master.stop()


async def test_refused_hellos_are_all_counted_but_logged_once_in_a_while(tmp_path, caplog):
    master = flowbot.Master(_pipeline(w1="s"), db=f"sqlite:///{tmp_path / 'm.sqlite'}")
    await master.start()
    intruder = FakeWorker(master.worker_endpoint, "intruder", "guess")
    try:
        # When an undeclared worker says hello fifty times in a row
        with caplog.at_level(logging.WARNING, logger="flowbot.master.registry"):
            answers = [await intruder.hello() for _ in range(50)]

        # Then each is refused and counted, and the log says so once
        assert {answer.type for answer in answers} == {protocol.DISCONNECT}
        assert master.registry.dropped["refused"] == 50
        said = [r.getMessage() for r in caplog.records if "refused worker 'intruder'" in r.getMessage()]
        assert len(said) == 1 and "unknown worker" in said[0]
    finally:
        intruder.close()
        await master.stop()


def _peak_memory(pid: int) -> int:
    """The process's peak resident memory, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) * 1024


async def test_the_largest_valid_message_passes_and_a_larger_frame_is_cut_off_unbuffered(master_factory):
    # Given a master with one worker connected
    master = master_factory(
        """
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["big"])],
            builders=[Builder("big", workers=["w1"], steps=[Shell("true", name="talk")])],
        )
        """,
        heartbeat=2.0,
    )
    worker = FakeWorker(master.endpoint, "w1", "s")
    assert (await worker.hello()).type == protocol.WELCOME

    # When a stranger sends a 64 MiB frame, larger than any valid message has
    peak = _peak_memory(master.pid)
    ctx = zmq.asyncio.Context()
    stranger = ctx.socket(zmq.DEALER)
    stranger.setsockopt(zmq.LINGER, 0)
    monitor = stranger.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    stranger.connect(master.endpoint)
    try:
        await stranger.send_multipart([b"FBP1", b"", b"{}", b"{}", bytes(64 * 1024 * 1024)], copy=False)

        # Then the master cuts it off without taking the frame in
        cut_off = await asyncio.wait_for(monitor.recv_multipart(), 15)
        assert parse_monitor_message(cut_off)["event"] == zmq.EVENT_DISCONNECTED
        assert _peak_memory(master.pid) - peak < 16 * 1024 * 1024
        assert "oversized" not in master.log()
    finally:
        stranger.disable_monitor()
        monitor.close()
        stranger.close()
        ctx.term()

    # And the worker's link is untouched: output as large as one message may carry arrives whole
    await asyncio.to_thread(master.client.force, "big")
    start = await worker.expect(protocol.START_COMMAND)
    cmd_id = start.content["cmd_id"]
    largest = (b"y" * 1023 + b"\n") * (MAX_BLOB_BYTES // 1024)
    assert len(largest) == MAX_BLOB_BYTES == MAX_FRAME_BYTES
    await worker.send(protocol.OUTPUT, {"cmd_id": cmd_id, "stream": "stdout", "offset": 0}, (largest,))
    await worker.finish(cmd_id, rc=0)
    worker.close()
    (build,) = await asyncio.to_thread(finished_builds, master.client, 1)
    assert build["result"] == "SUCCESS"
    log = await asyncio.to_thread(step_log, master.client, build["id"], 0)
    assert log.count("y" * 1023 + "\n") == MAX_BLOB_BYTES // 1024


async def test_a_second_worker_with_a_name_in_use_is_refused_until_the_first_is_gone(tmp_path):
    # Given w1 connected to a master with quick heartbeats
    master = flowbot.Master(_pipeline(w1="s"), db=f"sqlite:///{tmp_path / 'm.sqlite'}", heartbeat=0.3)
    await master.start()
    first = _worker_process(master, "s", tmp_path / "first")
    second = None
    try:
        await until(lambda: "w1" in master.registry.connections, what="w1 to connect")
        connection = master.registry.connections["w1"]

        # When a second worker process calls itself w1 too
        second = _worker_process(master, "s", tmp_path / "second")

        # Then it is told why it is refused, again and again, while the first keeps its place and builds
        await until(lambda: second.log().count("is already connected") >= 2, what="the second w1 to be refused twice")
        assert master.registry.connections["w1"] is connection
        await master.force("b")
        await master.wait_idle(timeout=30)
        (build,) = await master.store.builds(builder="b")
        assert build["result"] == "SUCCESS" and master.registry.connections["w1"] is connection
        assert "refused" not in first.log()

        # And once the first is gone for good, the second takes its place
        first.kill()
        await until(lambda: master.registry.connections.get("w1") not in (None, connection), 30, "the second w1 in")
        await master.force("b")
        await master.wait_idle(timeout=30)
        assert [b["result"] for b in await master.store.builds(builder="b")] == ["SUCCESS", "SUCCESS"]
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        await master.stop()
