"""The event stream of an embedded master, read by a real WebSocket client."""

from __future__ import annotations

import asyncio
import json

import tornado.websocket

import flowbot
from flowbot import Builder, Pipeline, Shell, Worker
from flowbot.defaults import EVENT_CLIENT_BACKLOG

from ..e2e.test_events import close


async def test_a_client_resuming_from_far_back_gets_all_it_missed(tmp_path):
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")], builders=[Builder("b", workers=["w1"], steps=[Shell("true")])]
    )
    master = flowbot.Master(pipeline, db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    events = master.http_url.replace("http://", "ws://") + "/api/events"
    try:
        # Given a client that left, and more events than a client may have unsent happening meanwhile
        ws = await tornado.websocket.websocket_connect(events)
        since = json.loads(await ws.read_message())["last_id"]
        await close(ws)
        missed = EVENT_CLIENT_BACKLOG + 1000
        for n in range(missed):
            master.events.emit("request.new", request_id=n, builder="b")

        # When it comes back with since=
        ws = await tornado.websocket.websocket_connect(f"{events}?since={since}")
        hello = json.loads(await ws.read_message())
        assert (hello["replay"], hello["replayed"]) == ("journal", missed)

        # Then it gets every one of them, in order, and then what happens live
        replayed = [json.loads(await asyncio.wait_for(ws.read_message(), 10)) for _ in range(missed)]
        assert [e["request_id"] for e in replayed] == list(range(missed))
        assert all(e["replayed"] for e in replayed)
        master.events.emit("request.new", request_id=missed, builder="b")
        live = json.loads(await asyncio.wait_for(ws.read_message(), 10))
        assert live["request_id"] == missed and "replayed" not in live
        await close(ws)
    finally:
        await master.stop()
