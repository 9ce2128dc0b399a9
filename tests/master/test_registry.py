"""The worker registry (``flowbot/master/registry.py``) built alone, with no master: a real ROUTER
socket on loopback, and a real worker of the worker package running in the test's own loop,
dialling it through a proxy that can break the link. It checks what the registry decides: who
is connected, that heartbeats keep a worker, that silence loses it (and fails what it ran, so its
build is retried), and that a worker back within the window goes on with its command."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from flowbot_worker import protocol
from flowbot_worker.worker import Worker as WorkerProcess

from flowbot import Worker
from flowbot.defaults import SWEEP_BATCH
from flowbot.errors import WorkerLost
from flowbot.master.events import DURABLE_KINDS, Event, EventBus
from flowbot.master.registry import WorkerConnection, WorkerRegistry
from flowbot.master.tasks import Tasks

from ..e2e.fake_worker import FakeWorker
from ..proxy import LoopbackProxy
from ..support import Process, wait_for_async
from ..support import WorkerProcess as SpawnedWorker

#: Heartbeats every 0.1 s, a worker lost after 1 s of silence: quick, and still far from the
#: scheduling delays of a loaded machine.
HEARTBEAT, LIVENESS = 0.1, 10


class Sink:
    """Where a command's output goes (an ``OutputSink`` that stores at once)."""

    def __init__(self) -> None:
        self.data: dict[str, bytearray] = {}

    def write(self, stream: str, data: bytes) -> tuple[int, None]:
        self.data.setdefault(stream, bytearray()).extend(data)
        return 0, None

    def end(self) -> None:
        return None


@dataclass
class Link:
    """A registry, what it told its master, and the proxy its worker dials through."""

    registry: WorkerRegistry
    proxy: LoopbackProxy
    connected: list[WorkerConnection] = field(default_factory=list)
    lost: list[WorkerConnection] = field(default_factory=list)
    adopted: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def worker(self, basedir: Path) -> WorkerProcess:
        return WorkerProcess(f"tcp://127.0.0.1:{self.proxy.port}", "w1", "s", basedir)


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    events, tasks = EventBus(), Tasks()
    calls: dict[str, list] = {"connected": [], "lost": [], "adopted": []}
    registry = WorkerRegistry(
        {"w1": Worker("w1", secret="s")},
        "tcp://127.0.0.1:0",
        events,
        on_connected=calls["connected"].append,
        on_lost=calls["lost"].append,
        adopt=lambda connection, held: calls["adopted"].append(held),
        spawn=tasks.spawn,
        heartbeat=HEARTBEAT,
        liveness=LIVENESS,
    )
    endpoint = registry.start()
    proxy = LoopbackProxy(int(endpoint.rsplit(":", 1)[1]))
    made = Link(registry, proxy, calls["connected"], calls["lost"], calls["adopted"])
    events.subscribe(made.events.append, DURABLE_KINDS)
    yield made
    await registry.stop()
    await tasks.cancel()
    proxy.close()


@pytest.fixture
async def running(link: Link, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    """Worker w1 of the worker package, running in this loop until the test ends."""
    worker = link.worker(tmp_path / "w1")
    task = asyncio.create_task(worker.run())
    await wait_for_async(lambda: "w1" in link.registry.connections, 20, "the worker to connect")
    yield worker
    worker.stop()
    await asyncio.wait_for(task, 20)


async def test_a_worker_that_says_hello_is_connected_once_and_announced(link, running):
    # Given a worker that dialled the registry (the fixture waited for it)
    connection = link.registry.connections["w1"]

    # Then the registry told its master once, with what the worker said of itself
    assert link.connected == [connection]
    assert link.adopted == [{}]  # it held no command of an earlier master
    assert connection.info["pid"] == running._hello()["info"]["pid"]
    assert [(e["type"], e["worker"]) for e in link.events] == [("worker.connected", "w1")]


async def test_heartbeats_keep_a_worker_and_silence_loses_it(link, running):
    # Given a connected worker
    connection = link.registry.connections["w1"]
    seen = connection.last_seen

    # When it has only heartbeats to say, for twice the liveness window
    await asyncio.sleep(2 * HEARTBEAT * LIVENESS)

    # Then it is still connected, and was heard from meanwhile
    assert link.registry.connections.get("w1") is connection and not link.lost
    assert connection.last_seen > seen

    # But when the network drops everything, it is lost once the window has passed
    link.proxy.pause()
    try:
        await wait_for_async(lambda: link.lost, 30, "the worker to be lost")
    finally:
        link.proxy.resume()
    assert link.lost == [connection] and connection.lost
    assert link.events[-1]["type"] == "worker.lost"

    # And once the network is back, it says hello again as a new connection
    await wait_for_async(lambda: len(link.connected) == 2, 30, "the worker to come back")
    assert link.registry.connections["w1"] is not connection


async def test_a_command_runs_on_the_worker_and_its_output_reaches_the_master(link, running):
    connection = link.registry.connections["w1"]
    sink = Sink()

    result = await connection.run_command("c1", "shell", {"command": "echo hello", "builddir": "b"}, sink)

    assert (result.rc, result.reason) == (0, None)
    assert bytes(sink.data["stdout"]) == b"hello\n"


async def test_a_command_whose_worker_is_lost_fails_so_that_its_build_is_retried(link, running):
    # Given a long command running on the worker
    connection = link.registry.connections["w1"]
    sink = Sink()
    command = asyncio.create_task(connection.run_command("c1", "shell", {"command": "sleep 30"}, sink))
    await wait_for_async(lambda: "c1" in connection.commands, 10, "the command to be sent")

    # When the worker goes silent for longer than the window
    link.proxy.pause()
    try:
        # Then the command fails as WorkerLost (a build ends as RETRY on it)
        with pytest.raises(WorkerLost):
            await asyncio.wait_for(command, 30)
    finally:
        link.proxy.resume()


async def test_a_worker_back_within_the_window_goes_on_with_its_command(link, running):
    # Given a command printing one line, then another a little later
    connection = link.registry.connections["w1"]
    sink = Sink()
    script = "echo before; sleep 0.5; echo after"
    command = asyncio.create_task(connection.run_command("c1", "shell", {"command": script}, sink))
    await wait_for_async(lambda: b"before" in sink.data.get("stdout", b""), 20, "the first line")

    # When its connection is reset (a restarted NAT), and the worker dials again at once
    route = connection.route
    link.proxy.cut()

    # Then the registry resumes the same connection, and the command ends with all its output once
    result = await asyncio.wait_for(command, 30)
    assert result.rc == 0
    assert bytes(sink.data["stdout"]) == b"before\nafter\n"
    assert link.connected == [connection] and not link.lost
    assert link.registry.connections["w1"] is connection
    assert connection.route != route  # it came back on a new connection


async def test_the_registry_lets_the_loop_run_while_messages_keep_arriving(link):
    # Given 3,000 messages waiting for the registry (malformed ones, which it drops and counts),
    # sent while the loop was held, so that each is there to be read without a turn of the loop
    sender = zmq.Context.instance().socket(zmq.DEALER)
    sender.setsockopt(zmq.SNDHWM, 0)
    sender.connect(f"tcp://127.0.0.1:{link.proxy.target_port}")  # straight to the registry
    for n in range(3000):
        sender.send_multipart([b"not flowbot", str(n).encode()])
    time.sleep(1)  # the loop held: they reach the registry's socket meanwhile

    # When the registry reads them, and other work waits for its turn of the loop
    seen: list[int] = []

    def tick() -> None:
        seen.append(sum(link.registry.dropped.values()))
        if seen[-1] < 3000:
            asyncio.get_running_loop().call_soon(tick)

    asyncio.get_running_loop().call_soon(tick)
    await wait_for_async(lambda: seen and seen[-1] >= 3000, 60, "the messages to be read")
    sender.close(linger=0)

    # Then that work ran many times while they were being read, not only before and after
    assert len({count for count in seen if 0 < count < 3000}) >= 3


async def test_a_sweep_sends_heartbeats_a_bounded_batch_of_workers_per_turn_of_the_loop(link):
    # Given 350 workers heard from just now and due a heartbeat, as when they all connected together
    # (their routes lead nowhere: the registry's sends to them are dropped, as to a vanished peer)
    registry = link.registry
    for n in range(350):
        channel = protocol.Channel(b"s", registry.session)
        channel.open()
        conn = WorkerConnection(registry, Worker(f"w{n}", secret="s"), b"\0route%d" % n, "session", {}, channel)
        registry.connections[conn.name] = conn
    sent_by_turn: list[int] = []

    def tick() -> None:
        sent_by_turn.append(sum(1 for c in registry.connections.values() if c.last_sent))
        if sent_by_turn[-1] < 350:
            asyncio.get_running_loop().call_soon(tick)

    # When the registry sweeps them, while other work waits for its turn of the loop
    asyncio.get_running_loop().call_soon(tick)
    await registry.sweep()

    # Then every one got its heartbeat and none was lost, a batch of them per turn, the other work
    # running between the batches
    assert sum(1 for c in registry.connections.values() if c.last_sent) == 350
    assert not link.lost
    assert sorted(set(sent_by_turn))[:3] == [SWEEP_BATCH, 2 * SWEEP_BATCH, 3 * SWEEP_BATCH]


class Dialler:
    """A worker's side of the handshake, a step at a time, each connection a socket (a route) of its own."""

    def __init__(self, link: Link, secret: str = "s"):
        self.port = link.proxy.target_port  # straight to the registry
        self.channel = protocol.Channel(secret.encode())
        self.sock: zmq.asyncio.Socket | None = None
        self.socks: list[zmq.asyncio.Socket] = []  # every connection it opened, closed at the end

    def dial(self) -> None:
        """Open a new connection (a new route), as a worker that gave up on the last one does."""
        self.sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        self.socks.append(self.sock)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"tcp://127.0.0.1:{self.port}")
        self.channel.open()

    async def hello(self, date: float | None = None, hold: float = 0.0, wait: float = 20) -> protocol.Message | None:
        """Say hello (dated ``date`` by the worker's clock) and hold the loop ``hold`` seconds, as a
        master busy with other work does; the registry's answer, if one comes within ``wait`` seconds."""
        tag, _, header, content = self.channel.pack(protocol.HELLO, {"name": "w1", "version": protocol.VERSION})
        parts = [json.dumps({**json.loads(header), "date": date or time.time()}).encode(), content]
        await self.sock.send_multipart([tag, protocol.sign(self.channel.key, parts), *parts])
        time.sleep(hold)
        if not await self.sock.poll(int(wait * 1000)):
            return None
        return self.channel.accept(await self.sock.recv_multipart())

    async def handshake(self, date: float | None = None) -> protocol.Message | None:
        """Hello, challenge, hello: the welcome, if one comes."""
        challenge = await self.hello(date)
        assert challenge is not None and challenge.type == protocol.CHALLENGE
        self.channel.extend(challenge.content["nonce"])
        return await self.hello(date)

    def close(self) -> None:
        for sock in self.socks:
            sock.close(linger=0)


async def test_a_hello_the_registry_reaches_after_its_worker_gave_up_is_dropped(link):
    # Given a registry whose workers wait 3 s for their welcome (it answers for 2 s of it), and a
    # worker whose first hello it answered at once
    link.registry.hello_timeout = 3.0
    worker = Dialler(link)
    worker.dial()
    try:
        challenge = await worker.hello()
        assert challenge is not None and challenge.type == protocol.CHALLENGE
        worker.channel.extend(challenge.content["nonce"])

        # When its second hello waits 2.5 s for the registry, whose loop is held
        # Then it is not welcomed: the worker stopped waiting, and is not counted as connected
        assert await worker.hello(hold=2.5, wait=1) is None
        assert link.registry.dropped["stale-hello"] == 1
        assert "w1" not in link.registry.connections and link.connected == []

        # When a first hello waits as long, it is not even answered
        worker.channel.open()
        assert await worker.hello(hold=2.5, wait=1) is None
        assert link.registry.dropped["stale-hello"] == 2

        # And a worker answered in time is welcomed
        worker.dial()
        assert (await worker.handshake()).type == protocol.WELCOME
        assert link.registry.dropped["stale-hello"] == 2
    finally:
        worker.close()


async def test_a_worker_whose_clock_is_behind_is_welcomed_by_a_registry_that_keeps_up(link):
    # Given a worker whose clock is a minute behind the master's
    worker = Dialler(link)
    worker.dial()
    try:
        # When it says hello to a registry with nothing else to read
        welcome = await worker.handshake(time.time() - 60)

        # Then it is welcomed: its hello is not taken for one that waited a minute
        assert welcome is not None and welcome.type == protocol.WELCOME
        assert "w1" in link.registry.connections and link.registry.dropped["stale-hello"] == 0
    finally:
        worker.close()


async def test_a_worker_that_dials_again_replaces_its_connection(link):
    # Given a worker welcomed on one connection
    worker = Dialler(link)
    worker.dial()
    old = worker.sock
    try:
        assert (await worker.handshake()).type == protocol.WELCOME
        first = link.registry.connections["w1"]

        # When it gives that connection up and dials again (the same worker process: its session)
        worker.dial()
        assert (await worker.handshake()).type == protocol.WELCOME

        # Then the registry holds one connection for it, on the new route, announced once and never lost
        assert list(link.registry.connections) == ["w1"] and link.registry.connections["w1"] is first
        assert [r for r, c in link.registry._by_route.items() if c is first] == [first.route]
        assert len(link.connected) == 1 and link.lost == []
        assert [e["type"] for e in link.events] == ["worker.connected"]

        # And what still comes on the old route counts for nothing
        dropped = link.registry.dropped["unknown-route"]
        await old.send_multipart(worker.channel.pack(protocol.HEARTBEAT))
        await wait_for_async(lambda: link.registry.dropped["unknown-route"] > dropped, 20, "the old route's message")
    finally:
        worker.close()


async def test_a_body_that_cannot_be_read_is_dropped_and_counted_and_the_worker_carries_on(link):
    # Given a worker connected straight to the registry, running a command
    peer = FakeWorker(link.registry.endpoint, "w1", "s")
    try:
        assert (await peer.hello()).type == protocol.WELCOME
        connection = link.registry.connections["w1"]
        command = asyncio.create_task(connection.run_command("c1", "shell", {"command": "true"}, Sink()))
        await peer.expect(protocol.START_COMMAND)

        # When it sends bodies of every kind that miss a field they need, or have one of the wrong type
        await peer.send(protocol.OUTPUT, {"cmd_id": "c1", "stream": "stdout", "offset": "0"}, (b"x",))
        await peer.send(protocol.OUTPUT, {"cmd_id": "c1", "stream": "stdout", "offset": 0})  # its bytes missing
        await peer.send(protocol.FINISHED, {"cmd_id": 1, "rc": 0})
        await peer.send(protocol.FILE_DATA, {"cmd_id": "c1", "seq": "0", "final": True}, (b"x",))
        await peer.send(protocol.FILE_CREDIT, {"cmd_id": "c1", "credits": -1})
        await wait_for_async(lambda: sum(link.registry.dropped.values()) >= 5, 10, "the bodies to be dropped")

        # Then each is dropped and counted, as what it is, and nothing of it is acted on
        assert dict(link.registry.dropped) == {
            "bad-output": 2,
            "bad-body": 1,
            "bad-file-data": 1,
            "bad-file-credit": 1,
        }
        assert not command.done()

        # And the worker is still connected, and what it says next is heard
        await peer.finish("c1", rc=0)
        assert (await asyncio.wait_for(command, 10)).rc == 0
        assert link.registry.connections["w1"] is connection and not link.lost
    finally:
        peer.close()


def _worker_process(link: Link, basedir: Path) -> Process:
    """Worker w1 as a process of its own (so that it can be killed), dialling through the proxy."""
    return SpawnedWorker(f"tcp://127.0.0.1:{link.proxy.port}", "w1", "s", basedir)


async def _connected(link: Link, basedir: Path) -> tuple[Process, WorkerConnection]:
    """Worker w1 started as a process on ``basedir``, once connected, with its connection."""
    worker = _worker_process(link, basedir)
    await wait_for_async(lambda: "w1" in link.registry.connections, 30, "the worker to connect")
    return worker, link.registry.connections["w1"]


def _journal(basedir: Path) -> dict[str, dict[str, Any]]:
    """The worker's journal entries, by command id."""
    entries = [json.loads(path.read_text()) for path in (basedir / ".flowbot-journal").glob("*.json")]
    return {entry["cmd_id"]: entry for entry in entries}


async def _killed(worker: Process, link: Link) -> None:
    """SIGKILL ``worker`` while its link is held, so that nothing it sent since reaches the master."""
    worker.kill()
    worker.stop()
    link.proxy.cut()
    link.proxy.resume()
    await asyncio.sleep(HEARTBEAT * 2)  # past the moment a hello in its name counts as a second worker


async def test_a_result_a_worker_died_before_reporting_comes_from_its_journal_once_it_restarts(link, tmp_path):
    # Given a command that ends while its worker's link is held, the worker then killed: the master
    # never had its result, which the worker kept in its journal
    basedir = tmp_path / "w1"
    worker, connection = await _connected(link, basedir)
    sink = Sink()
    command = asyncio.create_task(connection.run_command("c1", "shell", {"command": "sleep 1; echo done"}, sink))
    await wait_for_async(lambda: "c1" in _journal(basedir), 30, "the command to start")
    link.proxy.pause()
    await wait_for_async(lambda: _journal(basedir)["c1"]["finished"], 30, "the command to end")
    await _killed(worker, link)

    # When the worker starts again on the same directory
    again = _worker_process(link, basedir)
    try:
        # Then the command's result and output come from the journal, on the same connection: its build goes on
        result = await asyncio.wait_for(command, 30)
        assert result.rc == 0
        assert bytes(sink.data["stdout"]) == b"done\n"
        assert link.registry.connections["w1"] is connection and link.lost == []
        await wait_for_async(lambda: not _journal(basedir), 20, "the worker to forget the result acknowledged")
    finally:
        again.stop()


async def test_a_command_a_worker_died_running_fails_and_one_it_never_had_is_started_again(link, tmp_path):
    # Given a worker killed after a command was sent to it while its link was held
    basedir = tmp_path / "w1"
    worker, connection = await _connected(link, basedir)
    sink = Sink()
    link.proxy.pause()
    never_had = asyncio.create_task(connection.run_command("c2", "shell", {"command": "echo again"}, sink))
    await asyncio.sleep(0.1)
    await _killed(worker, link)

    # When it starts again, with a journal that does not name that command
    worker = _worker_process(link, basedir)
    try:
        # Then the command runs there
        assert (await asyncio.wait_for(never_had, 30)).rc == 0
        assert bytes(sink.data["stdout"]) == b"again\n"

        # And a command it dies running fails (its build runs again), and nothing of it is left
        running = asyncio.create_task(connection.run_command("c3", "shell", {"command": "sleep 30"}, Sink()))
        await wait_for_async(lambda: "c3" in _journal(basedir), 30, "the command to start")
        link.proxy.pause()
        await _killed(worker, link)
        worker = _worker_process(link, basedir)
        with pytest.raises(WorkerLost):
            await asyncio.wait_for(running, 30)
        await wait_for_async(lambda: not _journal(basedir), 20, "the worker to forget the command it died running")
    finally:
        worker.stop()
