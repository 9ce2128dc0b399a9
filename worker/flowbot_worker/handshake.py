"""Why a connection to the master failed before any message could pass.

ZeroMQ's handshake fails silently: a refused CURVE key, or one side encrypting and the other not,
only shows as a hello that is never answered. The socket monitor does report these failures, so
the worker watches it and says, in a sentence, what to fix.
"""

from __future__ import annotations

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from .curve import ClientKeys

_FAILURES = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


class Handshake:
    """Watches a socket's handshakes with the master.

    Args:
        sock: the worker's socket, before it connects.
        name: the worker's name, for the advice.
        curve: the worker's CURVE keys, if it encrypts the link.
    """

    def __init__(self, sock: zmq.asyncio.Socket, name: str, curve: ClientKeys | None):
        self.sock = sock
        self.name = name
        self.curve = curve
        self.monitor = sock.get_monitor_socket(_FAILURES)

    async def failure(self) -> str | None:
        """What went wrong, if a handshake failed since the last call; None if none did."""
        if await self.monitor.poll(0):
            event = parse_monitor_message(await self.monitor.recv_multipart())
            return self._explain(event["event"], event["value"])
        return None

    def _explain(self, event: int, value: int) -> str:
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return (
                f"the master refused this worker's CURVE key (status {value}): its pipeline must declare "
                f"Worker({self.name!r}, ..., public_key={self.curve.own.public!r})"
                if self.curve
                else f"the master refused this worker's handshake (status {value})"
            )
        if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            if self.curve:
                return (
                    "the master does not encrypt the link (its pipeline has no curve_key): "
                    "start this worker without --master-key and --key-file, or give the master a curve_key"
                )
            return "the master encrypts the link (CURVE): give this worker --master-key and --key-file"
        # ZeroMQ does not always tell a mechanism mismatch from a broken connection (a busy master
        # may close first), nor a wrong master key from either: hence both causes, and the "if".
        if self.curve:
            return (
                "the encrypted handshake with the master failed: is --master-key the master's public key? "
                "(or the master does not encrypt the link: its pipeline has no curve_key)"
            )
        return "the handshake with the master failed: if it encrypts the link, give --master-key and --key-file"

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
