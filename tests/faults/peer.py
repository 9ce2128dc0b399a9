"""A worker that says whatever it is told, over a plain (blocking) DEALER socket: the fuzzers' voice.

It knows a worker's secret, so what it sends gets past the signature check and reaches the code
that reads each message: :meth:`Peer.handshake` does the challenge and response, :meth:`Peer.send`
signs any content, :meth:`Peer.send_with_header` any header too, and :meth:`Peer.send_raw` sends
frames as they are. It notes the commands the master starts on it, so messages can name them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import zmq
from flowbot_worker import protocol
from flowbot_worker.errors import ProtocolError


class Peer:
    """One connection to a master's worker port, as worker ``name`` with ``secret``."""

    def __init__(self, endpoint: str, name: str, secret: str):
        self.name = name
        self.channel = protocol.Channel(secret.encode())
        self._ctx = zmq.Context()
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        #: Commands the master started on this peer, oldest first.
        self.commands: list[str] = []
        self.welcomed = False

    def hello_content(self) -> dict[str, Any]:
        return {"name": self.name, "version": protocol.VERSION, "info": {}, "held": {}}

    def handshake(self, attempts: int = 5) -> None:
        """Say hello, answer the challenge, and wait for the welcome; a refusal that comes meanwhile may
        answer a hello sent before (what a fuzzer sent), so it is passed over and hello said again."""
        for _ in range(attempts):
            self.drain(wait=0.3)
            self.channel.open()
            self.send(protocol.HELLO, self.hello_content())
            challenge = self._wait(protocol.CHALLENGE)
            if challenge is None:
                continue
            self.channel.extend(challenge.content["nonce"])
            self.send(protocol.HELLO, self.hello_content())
            if self._wait(protocol.WELCOME) is not None:
                self.welcomed = True
                return
        raise AssertionError(f"no welcome for {self.name} after {attempts} hellos")

    def _wait(self, kind: str, timeout: float = 3.0) -> protocol.Message | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.drain(wait=0.2):
                if message.type == kind:
                    return message
        return None

    def send(self, kind: str, content: dict[str, Any] | None = None, blobs: tuple[bytes, ...] = ()) -> None:
        self.sock.send_multipart(self.channel.pack(kind, content, blobs))

    def send_with_header(self, kind: str, content: Any, changes: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> None:
        """Send a message whose header has ``changes`` (any JSON), signed as a real worker would sign it."""
        tag, _, header, _ = self.channel.pack(kind)
        fields = {**json.loads(header), **changes}
        parts = [json.dumps(fields).encode(), json.dumps(content).encode(), *blobs]
        self.sock.send_multipart([tag, protocol.sign(self.channel.key, parts), *parts])

    def send_raw(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def drain(self, wait: float = 0.0) -> list[protocol.Message]:
        """What the master sent since the last call (waiting up to ``wait`` seconds for the first of it);
        a disconnect ends the welcome, and heartbeats are answered."""
        got = []
        while self.sock.poll(int(wait * 1000)):
            wait = 0.0
            frames = self.sock.recv_multipart()
            try:
                message = protocol.parse(frames)
                if message.session:  # only refusals are unsigned
                    message = self.channel.accept(frames, message)
            except ProtocolError:  # bound to a link a fuzzed hello made: not this peer's
                continue
            if message.type == protocol.START_COMMAND and isinstance(message.content.get("cmd_id"), str):
                self.commands.append(message.content["cmd_id"])
            elif message.type == protocol.DISCONNECT:
                self.welcomed = False
            elif message.type == protocol.HEARTBEAT and self.welcomed:
                self.send(protocol.HEARTBEAT)
            got.append(message)
        return got

    def close(self) -> None:
        self.sock.close(linger=0)
        self._ctx.term()
