"""Counting the connections the worker socket cuts off for a frame too large.

ZeroMQ cuts off a peer that sends a frame larger than any valid message has (``MAXMSGSIZE``)
before buffering it, which keeps the master's memory safe, but it says nothing of it: its monitor
reports the end of that connection as it reports a worker closing its socket. To tell them apart,
the master keeps a duplicate of each connection's file descriptor from its handshake until a
worker on it is welcomed (a worker that proved its secret sends no such frame). When ZeroMQ
reports a connection over, a peer that closed it has sent its end, while one that was cut off
for a frame too large still had the rest of the frame on the way, unread: that is a cut-off.

Every handshake waits for the ZAP handler (see :class:`Gate`), and the gate takes in the
connections ZeroMQ accepted before it lets one through: so a connection is watched before it can
send a frame, whatever the peer does and however busy the master is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger(__name__)

#: The ZAP domain of the worker socket: set, it makes handshakes without CURVE ask the ZAP handler too.
ZAP_DOMAIN = b"flowbot-workers"


class Gate(AsyncioAuthenticator):
    """The ZAP handler (``zmq.auth``'s, on the master's loop), which first calls ``before``."""

    def __init__(self, ctx: zmq.asyncio.Context, before: Callable[[], None]):
        super().__init__(ctx)
        self._before = before

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._before()
        await super().handle_zap_message(msg)


class CutOffs:
    """Watches the connections of ``sock`` (a ROUTER, not yet bound) and calls ``cut_off`` with
    the peer's address for each one ZeroMQ cut off while the peer was still sending."""

    def __init__(self, sock: zmq.asyncio.Socket, cut_off: Callable[[str], None]):
        self._sock = sock
        self._cut_off = cut_off
        address = f"inproc://flowbot-cut-offs-{id(self):x}"
        sock.monitor(address, zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self._events = sock.context.socket(zmq.PAIR, socket_class=zmq.Socket)  # read without waiting
        self._events.connect(address)
        #: Duplicates of the connections watched, by ZeroMQ's file descriptor.
        self._watched: dict[int, socket.socket] = {}

    @property
    def watched(self) -> int:
        return len(self._watched)

    def catch_up(self) -> None:
        """Take in what the socket's connections did since the last call: watch the new ones,
        count those cut off among the ended ones."""
        events = []
        with contextlib.suppress(zmq.Again):
            while True:
                events.append(parse_monitor_message(self._events.recv_multipart(zmq.NOBLOCK)))
        # Where each descriptor's connection last ended in this batch: one pass, however many
        # connections a burst of workers opened while the loop was busy.
        last_end = {int(e["value"]): i for i, e in enumerate(events) if e["event"] == zmq.EVENT_DISCONNECTED}
        for i, event in enumerate(events):
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self._ended(fd)
            elif last_end.get(fd, -1) < i:
                self._watch(fd)  # (one that ended already is gone: its descriptor may be another's now)

    def _watch(self, fd: int) -> None:
        self.trust(fd)
        try:
            duplicate = socket.socket(fileno=os.dup(fd))
        except OSError as exc:  # out of descriptors, say: that connection goes unwatched
            log.debug("cannot watch connection %d: %s", fd, exc)
            return
        duplicate.setblocking(False)
        self._watched[fd] = duplicate

    def trust(self, fd: int) -> None:
        """Stop watching connection ``fd`` (a worker on it was welcomed)."""
        duplicate = self._watched.pop(fd, None)
        if duplicate is not None:
            duplicate.close()

    def _ended(self, fd: int) -> None:
        duplicate = self._watched.pop(fd, None)
        if duplicate is None:
            return
        with duplicate:
            try:
                pending = duplicate.recv(1, socket.MSG_PEEK)
                peer = "{}:{}".format(*duplicate.getpeername()[:2]) if pending else ""
            except OSError:  # nothing on the way (BlockingIOError), or reset by the peer
                return
        if pending:  # the peer had not closed it, and was still sending
            self._cut_off(peer)

    def close(self) -> None:
        for fd in list(self._watched):
            self.trust(fd)
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._events.close(linger=0)
