"""A worker's end of the link, against a master played by a bare ROUTER socket."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio
from flowbot_worker import protocol
from flowbot_worker.defaults import MAX_FRAME_BYTES
from flowbot_worker.worker import Worker
from zmq.utils.monitor import parse_monitor_message


async def test_a_worker_takes_the_largest_valid_message_and_cuts_off_a_master_sending_larger(tmp_path):
    # Given a worker that has said hello to a master
    ctx = zmq.asyncio.Context()
    master = ctx.socket(zmq.ROUTER)
    master.setsockopt(zmq.LINGER, 0)
    port = master.bind_to_random_port("tcp://127.0.0.1")
    monitor = master.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    channel = protocol.Channel(b"s")
    worker = Worker(f"tcp://127.0.0.1:{port}", "w1", "s", tmp_path)
    running = asyncio.create_task(worker.run())
    try:
        route, *frames = await asyncio.wait_for(master.recv_multipart(), 10)
        hello = channel.accept(frames)

        # When the welcome carries a blob as large as a frame may be
        settings = {"heartbeat": 0.1, "liveness": 1000, "cancel": [], "resume": {}}
        welcome = channel.pack(protocol.WELCOME, settings, (bytes(MAX_FRAME_BYTES),), re=hello.msg_id)
        await master.send_multipart([route, *welcome], copy=False)

        # Then the worker takes it: it is welcomed and starts its heartbeats
        route, *frames = await asyncio.wait_for(master.recv_multipart(), 10)
        assert channel.accept(frames).type == protocol.HEARTBEAT

        # But a frame one byte larger cuts the link before the worker buffers it
        heartbeat = channel.pack(protocol.HEARTBEAT, {}, (bytes(MAX_FRAME_BYTES + 1),))
        await master.send_multipart([route, *heartbeat], copy=False)
        cut_off = await asyncio.wait_for(monitor.recv_multipart(), 5)
        assert parse_monitor_message(cut_off)["event"] == zmq.EVENT_DISCONNECTED
        assert not running.done()
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
        master.disable_monitor()
        monitor.close()
        master.close()
        ctx.term()


async def test_a_graceful_shutdown_keeps_the_link_until_the_master_has_the_running_commands_result(tmp_path):
    # Given a welcomed worker running a command that takes half a second
    ctx = zmq.asyncio.Context()
    master = ctx.socket(zmq.ROUTER)
    master.setsockopt(zmq.LINGER, 0)
    port = master.bind_to_random_port("tcp://127.0.0.1")
    channel = protocol.Channel(b"s")
    worker = Worker(f"tcp://127.0.0.1:{port}", "w1", "s", tmp_path)
    running = asyncio.create_task(worker.run())

    async def receive() -> protocol.Message:
        _, *frames = await asyncio.wait_for(master.recv_multipart(), 10)
        return channel.accept(frames)

    async def send(kind: str, content: dict) -> None:
        await master.send_multipart([route, *channel.pack(kind, content)])

    try:
        route, *frames = await asyncio.wait_for(master.recv_multipart(), 10)
        channel.accept(frames)
        await send(protocol.WELCOME, {"heartbeat": 0.1, "liveness": 1000, "cancel": [], "resume": {}})
        await send(
            protocol.START_COMMAND, {"cmd_id": "c1", "name": "shell", "args": {"command": "sleep 0.5; echo done"}}
        )

        # When the master asks it to shut down gracefully
        await send(protocol.SHUTDOWN, {"graceful": True})

        # Then it goes on talking (heartbeats, output) until the command's result is in
        seen = []
        while (message := await receive()).type != protocol.FINISHED:
            seen.append(message.type)
        assert message.content["rc"] == 0
        assert protocol.HEARTBEAT in seen and protocol.OUTPUT in seen
        await asyncio.sleep(0.3)
        assert not running.done()  # the result is not acknowledged yet: it could still be lost

        # And once the master acknowledges the result, it says goodbye and ends
        await send(protocol.ACK, {"cmd_id": "c1", "of": protocol.FINISHED})
        while (message := await receive()).type != protocol.DISCONNECT:
            pass
        await asyncio.wait_for(running, 5)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
        master.close()
        ctx.term()


async def test_one_acknowledgement_can_carry_the_results_of_several_commands(tmp_path):
    # Given a welcomed worker that runs two commands and is asked to leave once they are done
    ctx = zmq.asyncio.Context()
    master = ctx.socket(zmq.ROUTER)
    master.setsockopt(zmq.LINGER, 0)
    port = master.bind_to_random_port("tcp://127.0.0.1")
    channel = protocol.Channel(b"s")
    worker = Worker(f"tcp://127.0.0.1:{port}", "w1", "s", tmp_path)
    running = asyncio.create_task(worker.run())

    async def receive() -> protocol.Message:
        _, *frames = await asyncio.wait_for(master.recv_multipart(), 10)
        return channel.accept(frames)

    async def send(kind: str, content: dict) -> None:
        await master.send_multipart([route, *channel.pack(kind, content)])

    try:
        route, *frames = await asyncio.wait_for(master.recv_multipart(), 10)
        channel.accept(frames)
        await send(protocol.WELCOME, {"heartbeat": 0.1, "liveness": 1000, "cancel": [], "resume": {}})
        for cmd_id in ("c1", "c2"):
            await send(protocol.START_COMMAND, {"cmd_id": cmd_id, "name": "shell", "args": {"command": "true"}})
        await send(protocol.SHUTDOWN, {"graceful": True})
        finished = set()
        while len(finished) < 2:
            message = await receive()
            if message.type == protocol.FINISHED:
                finished.add(message.content["cmd_id"])

        # When the master acknowledges both results in one message
        await send(protocol.ACK, {"of": protocol.FINISHED, "cmd_ids": ["c1", "c2"], "cmd_id": "c1"})

        # Then the worker holds neither any more: it says goodbye and ends
        while (message := await receive()).type != protocol.DISCONNECT:
            assert message.type != protocol.FINISHED or message.content["cmd_id"] not in finished
        await asyncio.wait_for(running, 5)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
        master.close()
        ctx.term()
