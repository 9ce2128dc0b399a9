"""Counting the connections the worker socket cuts off.

ZeroMQ cuts off a peer that sends a frame larger than any valid message has (``MAXMSGSIZE``)
before buffering it, which keeps the master's memory safe, but it says nothing of it: its monitor
reports the end of such a connection as it reports a worker closing its socket. To tell them
apart, the registry keeps a duplicate of each new connection's file descriptor, until the worker
on it is welcomed (a worker that proved its secret never sends such frames): when ZeroMQ reports
the connection over, a peer that closed it has sent its end, while one that was cut off still
had bytes on the way, which nobody read. Those cut-offs are counted; a peer whose handshake
failed has nothing on the way, and is counted where the handshake is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger(__name__)


class CutOffs:
    """Watches the connections of ``sock`` (a ROUTER) and calls ``cut_off`` with the peer's
    address for each one ZeroMQ cut off while the peer was still sending."""

    def __init__(self, sock: zmq.asyncio.Socket, cut_off: Callable[[str], None]):
        self._cut_off = cut_off
        self._monitor = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self._sock = sock
        #: Duplicates of the connections watched, by ZeroMQ's file descriptor.
        self._watched: dict[int, socket.socket] = {}

    @property
    def watched(self) -> int:
        return len(self._watched)

    async def run(self) -> None:
        """Follow the socket's connections until cancelled."""
        while True:
            event = parse_monitor_message(await self._monitor.recv_multipart())
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._watch(fd)
            else:
                self._ended(fd)

    def _watch(self, fd: int) -> None:
        self.trust(fd)  # a descriptor reused: the connection that had it is over
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
        self._monitor.close(linger=0)
