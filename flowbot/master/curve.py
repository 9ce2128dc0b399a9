"""CURVE on the worker link: the master's ROUTER as a CURVE server, with a ZAP handler for keys.

During each handshake, before any message passes, ZeroMQ asks the ZAP handler (``zmq.auth``'s,
running on the master's own loop) whether the connecting public key may in; a key that no
declared worker has is refused there. The key a connection proved then arrives on each of its
messages as the ``User-Id`` property, so the registry can check it belongs to the worker that the
signed hello names.
"""

from __future__ import annotations

from collections.abc import Callable

import zmq
import zmq.asyncio
from flowbot_worker.curve import KeyPair
from zmq.auth.asyncio import AsyncioAuthenticator


class _KeyCheck:
    """The credentials provider ``zmq.auth`` asks about each connecting public key."""

    def __init__(self, allowed: Callable[[str], bool]):
        self.allowed = allowed

    def callback(self, domain: str, key: bytes) -> bool:
        return self.allowed(key.decode("ascii"))


def proven_key(frame: zmq.Frame) -> str | None:
    """The CURVE public key (Z85 text) that the connection a frame came over proved, if any."""
    try:
        return frame.get("User-Id")
    except zmq.ZMQError:  # no ZAP handler answered for this connection
        return None


def serve(
    sock: zmq.asyncio.Socket, keys: KeyPair, allowed: Callable[[str], bool], authenticator: AsyncioAuthenticator
) -> None:
    """Make ``sock`` (not yet bound) a CURVE server with ``keys``, whose ZAP handler ``authenticator``
    (started) admits the public keys ``allowed`` says yes to."""
    sock.curve_secretkey = keys.secret.encode()
    sock.curve_publickey = keys.public.encode()
    sock.curve_server = True
    authenticator.configure_curve_callback("*", credentials_provider=_KeyCheck(allowed))
