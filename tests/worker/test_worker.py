"""A worker (``flowbot_worker/worker.py``) against a master played by a bare ROUTER socket: what it
says, when it reconnects, and what it keeps of its commands across connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import zmq
import zmq.asyncio
from flowbot_worker import protocol
from flowbot_worker.defaults import MAX_FRAME_BYTES
from flowbot_worker.worker import Worker
from zmq.utils.monitor import parse_monitor_message

#: What a test master welcomes a worker with: quick heartbeats, and no giving up on the worker.
SETTINGS = {"heartbeat": 0.1, "liveness": 1000, "cancel": [], "resume": {}}


class BareMaster:
    """A ROUTER socket speaking FBP to one worker, one message at a time, as the test says."""

    def __init__(self, ctx: zmq.asyncio.Context, secret: bytes = b"s"):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"tcp://127.0.0.1:{self.sock.bind_to_random_port('tcp://127.0.0.1')}"
        self.channel = protocol.Channel(secret)
        self.route = b""

    async def frames(self) -> list[bytes]:
        self.route, *frames = await asyncio.wait_for(self.sock.recv_multipart(), 10)
        return frames

    async def receive(self) -> protocol.Message:
        return self.channel.accept(await self.frames())

    async def send(self, kind: str, content: dict, blobs: tuple[bytes, ...] = (), re: str | None = None) -> None:
        await self.sock.send_multipart([self.route, *self.channel.pack(kind, content, blobs, re=re)], copy=False)

    async def challenge(self) -> protocol.Message:
        """Take a worker's first hello and challenge it; returns the hello signed over the challenge."""
        while protocol.parse(frames := await self.frames()).type != protocol.HELLO:
            pass  # what the worker sent on its connection before (a heartbeat), arriving late
        self.channel.open(protocol.parse(frames).header["link"])
        self.channel.accept(frames)
        nonce = protocol.nonce()
        await self.send(protocol.CHALLENGE, {"nonce": nonce})
        self.channel.extend(nonce)
        hello = await self.receive()
        assert hello.type == protocol.HELLO
        return hello


@pytest.fixture
async def link(tmp_path) -> AsyncIterator[tuple[BareMaster, Worker, asyncio.Task]]:
    """A bare master, and a worker (secret "s") dialing it; both stopped at teardown."""
    ctx = zmq.asyncio.Context()
    master = BareMaster(ctx)
    worker = Worker(master.endpoint, "w1", "s", tmp_path)
    running = asyncio.create_task(worker.run())
    yield master, worker, running
    worker.stop()
    await asyncio.wait_for(running, 10)
    ctx.destroy(linger=0)


async def test_a_worker_takes_the_largest_valid_message_and_cuts_off_a_master_sending_larger(link):
    # Given a worker that has said hello to a master
    master, _, running = link
    monitor = master.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        hello = await master.challenge()

        # When the welcome carries a blob as large as a frame may be
        await master.send(protocol.WELCOME, SETTINGS, (bytes(MAX_FRAME_BYTES),), re=hello.msg_id)

        # Then the worker takes it: it is welcomed and starts its heartbeats
        assert (await master.receive()).type == protocol.HEARTBEAT

        # But a frame one byte larger cuts the link before the worker buffers it
        await master.send(protocol.HEARTBEAT, {}, (bytes(MAX_FRAME_BYTES + 1),))
        cut_off = await asyncio.wait_for(monitor.recv_multipart(), 5)
        assert parse_monitor_message(cut_off)["event"] == zmq.EVENT_DISCONNECTED
        assert not running.done()
    finally:
        master.sock.disable_monitor()
        monitor.close()


async def test_a_graceful_shutdown_keeps_the_link_until_the_master_has_the_running_commands_result(link):
    # Given a welcomed worker running a command that takes half a second
    master, _, running = link
    await master.challenge()
    await master.send(protocol.WELCOME, SETTINGS)
    await master.send(
        protocol.START_COMMAND, {"cmd_id": "c1", "name": "shell", "args": {"command": "sleep 0.5; echo done"}}
    )

    # When the master asks it to shut down gracefully
    await master.send(protocol.SHUTDOWN, {"graceful": True})

    # Then it goes on talking (heartbeats, output) until the command's result is in
    seen = []
    while (message := await master.receive()).type != protocol.FINISHED:
        seen.append(message.type)
    assert message.content["rc"] == 0
    assert protocol.HEARTBEAT in seen and protocol.OUTPUT in seen
    await asyncio.sleep(0.3)
    assert not running.done()  # the result is not acknowledged yet: it could still be lost

    # And once the master acknowledges the result, it says goodbye and ends
    await master.send(protocol.ACK, {"cmd_id": "c1", "of": protocol.FINISHED})
    while (message := await master.receive()).type != protocol.DISCONNECT:
        pass
    await asyncio.wait_for(running, 5)


async def test_one_acknowledgement_can_carry_the_results_of_several_commands(link):
    # Given a welcomed worker that runs two commands and is asked to leave once they are done
    master, _, running = link
    await master.challenge()
    await master.send(protocol.WELCOME, SETTINGS)
    for cmd_id in ("c1", "c2"):
        await master.send(protocol.START_COMMAND, {"cmd_id": cmd_id, "name": "shell", "args": {"command": "true"}})
    await master.send(protocol.SHUTDOWN, {"graceful": True})
    finished = set()
    while len(finished) < 2:
        message = await master.receive()
        if message.type == protocol.FINISHED:
            finished.add(message.content["cmd_id"])

    # When the master acknowledges both results in one message
    await master.send(protocol.ACK, {"of": protocol.FINISHED, "cmd_ids": ["c1", "c2"], "cmd_id": "c1"})

    # Then the worker holds neither any more: it says goodbye and ends
    while (message := await master.receive()).type != protocol.DISCONNECT:
        assert message.type != protocol.FINISHED or message.content["cmd_id"] not in finished
    await asyncio.wait_for(running, 5)


async def test_a_command_captured_on_an_earlier_connection_is_never_run(link, caplog):
    # Given a start_command the master signed for the worker's first connection, captured on the way
    master, worker, _ = link
    await master.challenge()
    await master.send(protocol.WELCOME, SETTINGS)
    start = {"cmd_id": "c1", "name": "shell", "args": {"command": "true"}}
    captured = master.channel.pack(protocol.START_COMMAND, start)

    # When the worker reconnects (the master said goodbye), and once it is welcomed again, the frames are replayed
    await master.send(protocol.DISCONNECT, {"reason": "the master is shutting down"})
    master.channel = protocol.Channel(b"s")  # as a restarted master would
    await master.challenge()
    await master.send(protocol.WELCOME, SETTINGS)
    await master.sock.send_multipart([master.route, *captured])

    # Then the worker drops them and runs nothing: it only sends heartbeats
    seen = {(await master.receive()).type for _ in range(10)}
    assert seen == {protocol.HEARTBEAT}
    assert "dropped a message from the master: wrong-link" in caplog.text
    assert not (worker.basedir / "build").exists() and not worker._held


async def test_output_the_master_has_not_acknowledged_outlives_a_reconnect_and_is_sent_again(link):
    # Given a welcomed worker whose command printed a line the master received but has not acknowledged
    master, _, _ = link
    await master.challenge()
    await master.send(protocol.WELCOME, SETTINGS)
    command = {"cmd_id": "c1", "name": "shell", "args": {"command": "echo abc; sleep 3"}}
    await master.send(protocol.START_COMMAND, command)
    while (message := await master.receive()).type != protocol.OUTPUT:
        pass
    assert (message.content["offset"], message.blobs[0]) == (0, b"abc\n")

    # When the link breaks, and the next connection says it has received those bytes (not stored them)
    await master.send(protocol.DISCONNECT, {"reason": "a broken link"})
    hello = await master.challenge()
    assert hello.content["held"]["c1"]["offsets"] == {"stdout": [0, 4]}
    await master.send(protocol.WELCOME, {**SETTINGS, "resume": {"c1": {"stdout": 4}}}, re=hello.msg_id)

    # Then the worker still holds them: a master that lost them gets them again
    await master.send(protocol.DISCONNECT, {"reason": "the master went away before storing them"})
    hello = await master.challenge()
    assert hello.content["held"]["c1"]["offsets"] == {"stdout": [0, 4]}
    await master.send(protocol.WELCOME, {**SETTINGS, "resume": {"c1": {"stdout": 0}}}, re=hello.msg_id)
    while (message := await master.receive()).type != protocol.OUTPUT:
        pass
    assert (message.content["offset"], message.blobs[0]) == (0, b"abc\n")

    # And once they are acknowledged, it holds them no more
    await master.send(protocol.ACK, {"cmd_id": "c1", "of": protocol.OUTPUT, "offsets": {"stdout": 4}})
    await master.send(protocol.DISCONNECT, {"reason": "one more reconnect"})
    hello = await master.challenge()
    assert hello.content["held"]["c1"]["offsets"] == {"stdout": [4, 4]}


async def test_workers_sharing_a_context_leave_it_open_for_each_other(tmp_path):
    # Given a master, and two workers of one process that share one ZeroMQ context
    ctx = zmq.asyncio.Context()
    master = BareMaster(ctx)
    try:
        first = Worker(master.endpoint, "w1", "s", tmp_path / "w1", context=ctx)
        running = asyncio.create_task(first.run())
        await master.challenge()

        # When the first one stops
        first.stop()
        await asyncio.wait_for(running, 10)

        # Then the context is still open, and the second one says hello through it
        assert not ctx.closed
        second = Worker(master.endpoint, "w2", "s", tmp_path / "w2", context=ctx)
        running = asyncio.create_task(second.run())
        assert (await master.challenge()).content["name"] == "w2"
        second.stop()
        await asyncio.wait_for(running, 10)
    finally:
        ctx.destroy(linger=0)


async def test_a_worker_whose_master_goes_silent_says_hello_again_listing_the_commands_it_holds(link):
    # Given a worker welcomed with a short liveness window, running a long command
    master, _, _ = link
    await master.challenge()
    await master.send(protocol.WELCOME, {**SETTINGS, "liveness": 5})
    await master.send(protocol.START_COMMAND, {"cmd_id": "c1", "name": "shell", "args": {"command": "sleep 30"}})

    # When the master says nothing more, the worker goes on with heartbeats, then says hello again
    while (message := protocol.parse(await master.frames())).type != protocol.HELLO:
        assert message.type == protocol.HEARTBEAT

    # Then its hello lists the command it still runs, unfinished, for the master to resume
    assert message.content["held"] == {"c1": {"offsets": {}, "lines": {}, "finished": False}}


async def test_a_command_the_master_cancels_at_a_reconnect_is_stopped_and_forgotten(link):
    # Given a worker running a long command, whose link breaks
    master, worker, _ = link
    await master.challenge()
    await master.send(protocol.WELCOME, SETTINGS)
    await master.send(protocol.START_COMMAND, {"cmd_id": "c1", "name": "shell", "args": {"command": "sleep 30"}})
    while "c1" not in worker._held or worker._held["c1"].task is None:
        await asyncio.sleep(0.01)
    task = worker._held["c1"].task
    await master.send(protocol.DISCONNECT, {"reason": "a broken link"})

    # When the master it comes back to knows nothing of that command
    hello = await master.challenge()
    assert set(hello.content["held"]) == {"c1"}
    await master.send(protocol.WELCOME, {**SETTINGS, "cancel": ["c1"]}, re=hello.msg_id)

    # Then the worker stops it and holds it no more
    await asyncio.wait_for(task, 10)
    assert "c1" not in worker._held
