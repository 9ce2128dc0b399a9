"""A worker made of a bare DEALER socket, for what a real worker would not send or could not be made to."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import zmq
import zmq.asyncio
from flowbot_worker import protocol


class FakeWorker:
    """Speaks FBP1 to a master, one message at a time, as the test says.

    Args:
        endpoint: the master's worker endpoint.
        name, secret: who it claims to be, and the secret it signs with.
    """

    def __init__(self, endpoint: str, name: str, secret: str):
        self.name = name
        self.channel = protocol.Channel(secret.encode())
        self._ctx = zmq.asyncio.Context()
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    async def hello(self, info: dict[str, Any] | None = None) -> protocol.Message:
        """Say hello (with ``info`` about the worker), and again over the master's challenge; returns
        the master's answer, a ``welcome`` or an (unsigned) ``disconnect``."""
        self.channel.open()
        content = {"name": self.name, "version": protocol.VERSION, "info": info or {}, "held": {}}
        await self.send(protocol.HELLO, content)
        answer = await self.expect(protocol.CHALLENGE, protocol.DISCONNECT)
        if answer.type == protocol.DISCONNECT:
            return answer
        self.channel.extend(answer.content["nonce"])
        await self.send(protocol.HELLO, content)
        return await self.expect(protocol.WELCOME, protocol.DISCONNECT)

    async def send(self, kind: str, content: dict[str, Any] | None = None, blobs: tuple[bytes, ...] = ()) -> None:
        await self.sock.send_multipart(self.channel.pack(kind, content, blobs), copy=False)

    async def expect(self, *kinds: str, timeout: float = 15.0) -> protocol.Message:
        """The next message of one of ``kinds``; others are passed over, and heartbeats keep the link alive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not await self.sock.poll(200):
                await self.send(protocol.HEARTBEAT)
                continue
            frames = await self.sock.recv_multipart()
            message = protocol.parse(frames)
            if message.session:  # only refusals are unsigned
                message = self.channel.accept(frames, message)
            if message.type in kinds:
                return message
        raise AssertionError(f"no {' or '.join(kinds)} from the master within {timeout:g} s")

    async def finish(self, cmd_id: str, **content: Any) -> None:
        """Report ``cmd_id`` finished, and wait for the master to acknowledge it."""
        await self.send(protocol.FINISHED, {"cmd_id": cmd_id, "elapsed": 0.1, **content})
        while (await self.expect(protocol.ACK)).content.get("of") != protocol.FINISHED:
            pass

    def close(self) -> None:
        self.sock.close(linger=100)  # time for a last goodbye to leave
        self._ctx.term()


async def until(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``predicate`` without blocking the loop the master may be running on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)
