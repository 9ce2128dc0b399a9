"""The worker link turns away what it must: a retired secret, a replayed recording, frames too large, a flood
of refusals."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from pathlib import Path

import zmq
import zmq.asyncio
from flowbot_worker import protocol
from flowbot_worker.defaults import MAX_BLOB_BYTES, MAX_FRAME_BYTES
from zmq.utils.monitor import parse_monitor_message

import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker
from flowbot.record_json import build_json
from flowbot.results import Result

from ..support import (
    TEST_HEARTBEAT,
    MasterProcess,
    WorkerProcess,
    dropped_messages,
    finished_builds,
    step_log,
    wait_for,
)
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
        (build,) = [build_json(b) for b in await master.store.builds.query(builder="b")]
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

        # Then the master cuts it off without taking the frame in, and counts it
        cut_off = await asyncio.wait_for(monitor.recv_multipart(), 15)
        assert parse_monitor_message(cut_off)["event"] == zmq.EVENT_DISCONNECTED
        assert _peak_memory(master.pid) - peak < 16 * 1024 * 1024
        assert "oversized" not in master.log()
        await until(lambda: dropped_messages(master.client).get("cut-off") == 1, what="/metrics to count the cut-off")
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
        (build,) = [build_json(b) for b in await master.store.builds.query(builder="b")]
        assert build["result"] == "SUCCESS" and master.registry.connections["w1"] is connection
        assert "refused" not in first.log()

        # And once the first is gone for good, the second takes its place
        first.kill()
        await until(lambda: master.registry.connections.get("w1") not in (None, connection), 30, "the second w1 in")
        await master.force("b")
        await master.wait_idle(timeout=30)
        assert [b.result for b in await master.store.builds.query(builder="b")] == [Result.SUCCESS, Result.SUCCESS]
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        await master.stop()


REPLAYED_PIPELINE = """
    from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Interpolate, SecretsInDirectory
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        secrets=[SecretsInDirectory({secrets!r})],
        schedulers=[ForceScheduler("force", builders=["deploy"])],
        builders=[Builder("deploy", workers=["w1"], steps=[
            Shell(Interpolate("echo deploying; test -n '%(secret:token)s'"), name="deploy"),
        ])],
    )
"""
TOKEN = "hunter2-the-deploy-token"


def _replay(endpoint: str, captured: list[list[bytes]], seconds: float = 2.0) -> tuple[int, list[list[bytes]]]:
    """Send what was captured to the master from a socket of one's own, then go on replaying the
    captured heartbeats (as if to stay connected) for ``seconds``; returns how many messages went
    and every message that came back."""
    heartbeats = [frames for frames in captured if protocol.parse(frames).type == protocol.HEARTBEAT]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sent, answers = 0, []
    try:
        for frames in captured:
            sock.send_multipart(frames)
            sent += 1
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for frames in heartbeats:
                sock.send_multipart(frames)
                sent += 1
            while sock.poll(300):
                answers.append(sock.recv_multipart())
    finally:
        sock.close()
        ctx.term()
    return sent, answers


def _got_nowhere(master: MasterProcess, captured: list[list[bytes]], expect_connected_pid: int | None) -> None:
    """Replay ``captured`` to ``master``: it must welcome nobody, send no command and count each message dropped."""
    before = sum(dropped_messages(master.client).values())
    sent, answers = _replay(f"tcp://127.0.0.1:{master.zmq_port}", captured)

    kinds = {protocol.parse(frames).type for frames in answers}
    assert kinds <= {protocol.CHALLENGE, protocol.DISCONNECT}, kinds  # never a welcome nor a command
    assert not any(TOKEN.encode() in frame for frames in answers for frame in frames)
    wait_for(lambda: sum(dropped_messages(master.client).values()) - before >= sent, 10, "every replay to be counted")
    assert sum(dropped_messages(master.client).values()) - before == sent
    (w1,) = master.client.workers()
    if expect_connected_pid is None:
        assert not w1["connected"]
    else:
        assert w1["connected"] and w1["info"]["pid"] == expect_connected_pid


def test_a_recorded_link_replayed_gets_no_welcome_and_no_command_after_a_restart_of_either_side(
    master_factory, worker_factory, proxy_to, tmp_path
):
    # Given a worker whose link (without CURVE) someone records while it runs a build using a secret
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text(TOKEN)
    pipeline = REPLAYED_PIPELINE.format(secrets=str(tmp_path / "secrets"))
    master = master_factory(pipeline)
    tap = proxy_to(master, record=True)
    worker = worker_factory(master, "w1", "s")
    master.client.force("deploy")
    assert finished_builds(master.client, 1)[0]["result"] == "SUCCESS"
    time.sleep(4 * TEST_HEARTBEAT)  # a few heartbeats more
    captured = tap.worker_messages()
    kinds = Counter(protocol.parse(frames).type for frames in captured)
    assert kinds[protocol.HELLO] >= 1 and kinds[protocol.HEARTBEAT] >= 2
    assert kinds[protocol.OUTPUT] >= 1 and kinds[protocol.FINISHED] >= 1

    # When the worker has left and a build waits for it, and the recording is replayed to the master
    worker.stop()
    wait_for(lambda: not master.client.workers()[0]["connected"], 10, "w1 to leave")
    master.client.force("deploy")
    _got_nowhere(master, captured, expect_connected_pid=None)
    # Then the build still waits for the real worker
    assert len(master.client.buildrequests(pending=True)) == 1
    assert [b["result"] for b in master.client.builds()] == ["SUCCESS"]

    # When the worker restarts (and runs that build), and the recording is replayed again
    worker = worker_factory(master, "w1", "s")
    assert [b["result"] for b in finished_builds(master.client, 2)] == ["SUCCESS", "SUCCESS"]
    _got_nowhere(master, captured, expect_connected_pid=worker.pid)

    # When the master restarts, the worker comes back to it, and the recording is replayed to the new master
    master.stop()
    again = master_factory(pipeline, http_port=master.http_port, zmq_port=master.zmq_port)
    wait_for(lambda: again.client.workers()[0]["connected"], 30, "w1 to come back")
    _got_nowhere(again, captured, expect_connected_pid=worker.pid)

    # Then the real worker goes on building as if nothing happened
    again.client.force("deploy")
    assert [b["result"] for b in finished_builds(again.client, 3)][-1] == "SUCCESS"


async def test_a_worker_whose_clock_is_far_off_is_refused_and_told_so(tmp_path):
    # Given a worker whose clock is ten minutes behind the master's
    master = flowbot.Master(_pipeline(w1="s"), db=f"sqlite:///{tmp_path / 'm.sqlite'}")
    await master.start()
    worker = FakeWorker(master.worker_endpoint, "w1", "s")
    try:
        worker.channel.open()
        tag, _, header, content = worker.channel.pack(
            protocol.HELLO, {"name": "w1", "version": protocol.VERSION, "info": {}, "held": {}}
        )
        dated = json.loads(header)
        dated["date"] -= 600
        header = json.dumps(dated).encode()

        # When it says hello
        await worker.sock.send_multipart([tag, protocol.sign(b"s", [header, content]), header, content])

        # Then it is refused, told why, and the refusal is counted
        answer = await worker.expect(protocol.DISCONNECT)
        assert "its clock is off the master's" in answer.content["reason"]
        assert master.registry.dropped["stale"] == 1 and not master.registry.connections
    finally:
        worker.close()
        await master.stop()


async def test_only_a_connection_cut_off_for_a_frame_too_large_is_counted_and_a_welcomed_one_is_not_watched(tmp_path):
    # Given a master with a worker welcomed, whose connection is no longer watched
    master = flowbot.Master(_pipeline(w1="s"), db=f"sqlite:///{tmp_path / 'm.sqlite'}", heartbeat=0.3)
    await master.start()
    worker = FakeWorker(master.worker_endpoint, "w1", "s")
    ctx = zmq.asyncio.Context()
    polite, rude, silent = strangers = [ctx.socket(zmq.DEALER) for _ in range(3)]
    try:
        assert (await worker.hello()).type == protocol.WELCOME
        await until(lambda: master.registry.cutoffs.watched == 0, what="the worker's connection to be trusted")

        # When strangers connect: one sends a message and closes, one sends a frame over the limit as soon as it
        # can, one only connects
        for stranger in strangers:
            stranger.setsockopt(zmq.LINGER, 1000)
            stranger.connect(master.worker_endpoint)
        await polite.send_multipart([b"FBP1", b"", b"{}", b"{}"])
        await rude.send_multipart([b"FBP1", b"", b"{}", b"{}", bytes(MAX_FRAME_BYTES + 1024 * 1024)], copy=False)
        await until(lambda: master.registry.dropped["bad-type"] == 1, what="the polite stranger's message")
        polite.close()
        silent.close()

        # Then only the one cut off is counted, and nothing is watched once they are gone
        await until(lambda: master.registry.dropped["cut-off"] == 1, what="the cut-off to be counted")
        rude.close(linger=0)
        await until(lambda: master.registry.cutoffs.watched == 0, what="the strangers' connections to be let go")
        # And a worker leaving as workers do is not counted either
        worker.close()
        await until(lambda: "w1" not in master.registry.connections, what="the worker to leave")
        await asyncio.sleep(0.3)
        assert master.registry.dropped["cut-off"] == 1
    finally:
        for stranger in strangers:
            stranger.close(linger=0)
        ctx.term()
        await master.stop()
