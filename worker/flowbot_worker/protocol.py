"""FBP1, the wire protocol between a flowbot master and its workers.

This module is the only definition of the protocol: the worker uses it directly and the master
imports it. A message is a list of ZeroMQ frames (after the ROUTER's routing id on the master)::

    [b"FBP1", signature, header_json, content_json, *blobs]

``signature`` is the hex HMAC-SHA256 of header, content and blobs under the worker's secret, as in
Jupyter's kernel protocol; it is empty only when both sides run without a secret. ``header`` holds
``msg_id``, ``type``, ``session`` (new for every process), ``seq`` (strictly increasing per session),
``re`` (the ``msg_id`` this answers), ``date`` and ``link``.

Every connection has a link id of its own, made of a fresh nonce from each side, and every message
of the connection carries it, under the signature; so a message captured on one connection is
refused on any other, whether the worker, the master or both restarted in between::

    worker                                              master
    hello     {name, version, info, held}  link = W
                                                        challenge {nonce: M}   link = W
    hello     {name, version, info, held}  link = W.M
                                                        welcome {...}          link = W.M
    ... every later message, either way                 link = W.M

``W`` is new for each connection the worker opens and ``M`` for each challenge the master sends (it
holds for one hello, for the liveness window): only a hello signed over the master's fresh nonce is
welcomed, and the worker acts only on messages carrying its own. Within a connection, a message
whose ``seq`` is not above the last one seen from its session is a replay and is refused. As a
defence in depth, a message dated more than :data:`~flowbot_worker.defaults.DATE_WINDOW` seconds
away from the receiver's clock is refused too (so a worker's clock must be roughly right).

Nothing here does I/O, so both sides (and the tests) share it as plain functions and one small class.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .defaults import DATE_WINDOW, MAX_BLOB_BYTES, MAX_CONTENT_BYTES, MAX_HEADER_BYTES, PROTOCOL_TAG
from .errors import ProtocolError

#: Protocol version announced in ``hello``; a master refuses versions it does not speak.
#: Version 2 binds every message to its connection (the challenge and the ``link`` header).
VERSION = 2

# Message types, worker to master.
HELLO = "hello"
OUTPUT = "output"
FINISHED = "finished"
# Message types, master to worker.
CHALLENGE = "challenge"
WELCOME = "welcome"
DISCONNECT = "disconnect"
START_COMMAND = "start_command"
INTERRUPT = "interrupt"
SHUTDOWN = "shutdown"
# Either way.
HEARTBEAT = "heartbeat"
ACK = "ack"
FILE_DATA = "file_data"  # a chunk of a file being transferred, either way
FILE_CREDIT = "file_credit"  # room for more chunks, from whoever receives them

#: The ``reason`` of a ``finished`` command the worker refused as sent (an argument of the wrong kind,
#: a path outside its basedir, a command it does not have): a configuration problem, which the
#: master ends as EXCEPTION rather than a failure of the build.
INVALID = "invalid"

#: Every type a peer may send; anything else is malformed.
TYPES = frozenset(
    {
        HELLO,
        OUTPUT,
        FINISHED,
        CHALLENGE,
        WELCOME,
        DISCONNECT,
        START_COMMAND,
        INTERRUPT,
        SHUTDOWN,
        HEARTBEAT,
        ACK,
        FILE_DATA,
        FILE_CREDIT,
    }
)

_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(obj: Any) -> bytes:
    # A lone surrogate (which json.loads makes from a peer's "\udc80") cannot be UTF-8: write it
    # as the same JSON escape instead of failing.
    return _encode_json(obj).encode("utf-8", "backslashreplace")


_loads = json.loads

#: Hex digits of a nonce: 128 random bits.
_NONCE_DIGITS = 32
_HEX = frozenset("0123456789abcdef")


def nonce() -> str:
    """A fresh random nonce, one half of a connection's link id."""
    return secrets.token_hex(_NONCE_DIGITS // 2)


def is_nonce(value: object) -> bool:
    """Whether ``value`` has the shape of a :func:`nonce` (what a peer sends is checked before use)."""
    return isinstance(value, str) and len(value) == _NONCE_DIGITS and _HEX.issuperset(value)


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message. ``content`` is the JSON object; ``blobs`` carry raw bytes (output)."""

    type: str
    header: dict[str, Any]
    content: dict[str, Any]
    blobs: tuple[bytes, ...] = ()

    @property
    def msg_id(self) -> str:
        return self.header["msg_id"]

    @property
    def session(self) -> str:
        return self.header["session"]


def sign(key: bytes, parts: list[bytes]) -> bytes:
    """The hex HMAC-SHA256 of ``parts`` under ``key``; empty when there is no key."""
    if not key:
        return b""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.hexdigest().encode()


def parse(frames: list[bytes]) -> Message:
    """Decode frames into a :class:`Message` without checking the signature.

    Raises :class:`ProtocolError` for anything that is not a well-formed FBP1 message, so a caller
    can count and drop it. The master parses first to learn who claims to be speaking (``hello``
    names the worker), then checks the signature with that worker's secret.
    """
    if len(frames) < 4:
        raise ProtocolError("short", f"{len(frames)} frames")
    tag, _signature, raw_header, raw_content, *blobs = frames
    if tag != PROTOCOL_TAG:
        raise ProtocolError("bad-tag", repr(bytes(tag[:16])))
    if len(raw_header) > MAX_HEADER_BYTES or len(raw_content) > MAX_CONTENT_BYTES:
        raise ProtocolError("oversized", "header or content")
    if sum(len(b) for b in blobs) > MAX_BLOB_BYTES:
        raise ProtocolError("oversized", "blobs")
    try:
        header = _loads(raw_header)
        content = _loads(raw_content)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: too deeply nested
        raise ProtocolError("bad-json", str(exc)) from None
    if not isinstance(header, dict) or not isinstance(content, dict):
        raise ProtocolError("bad-json", "header and content must be objects")
    kind = header.get("type")
    if not isinstance(kind, str) or kind not in TYPES:  # a list or object is unhashable
        raise ProtocolError("bad-type", repr(kind)[:40])
    if not isinstance(header.get("session"), str) or type(header.get("seq")) is not int:  # not bool
        raise ProtocolError("bad-header", "session and seq are required")
    if not isinstance(header.get("msg_id"), str):
        raise ProtocolError("bad-header", "msg_id is required")
    if not _finite(header.get("date")):
        raise ProtocolError("bad-header", "date must be a number of seconds")
    return Message(kind, header, content, tuple(bytes(b) for b in blobs))


def _finite(value: object) -> bool:
    try:
        return type(value) in (int, float) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


class Channel:
    """One side of a connection: signs what it sends and checks what it receives.

    Args:
        key: the shared secret (the worker's); empty disables signing on a trusted loopback.
        session: this process's session id; a fresh one is made when omitted.
    """

    def __init__(self, key: bytes, session: str | None = None):
        self.key = key
        self.session = session or uuid.uuid4().hex
        self._prefix = self.session[:12] + "-"
        self._seq = 0
        #: The connection's link id, stamped on every message sent and required of every message
        #: received: the worker's nonce, then both nonces once the master's challenge is out.
        self.link = ""
        #: Last ``seq`` accepted from each peer session (replay protection within the connection).
        self._last_seq: dict[str, int] = {}

    def open(self, link: str | None = None) -> None:
        """Start a connection: with the worker's nonce ``link`` (the master), or a fresh one (the worker)."""
        self.link = link or nonce()
        self._last_seq.clear()

    def extend(self, challenge: str) -> None:
        """Add the master's challenge nonce to the link: from now on, both nonces bind each message."""
        self.link = f"{self.link}.{challenge}"

    @property
    def bound(self) -> bool:
        """Whether the link holds both nonces (the handshake's challenge has been sent or answered)."""
        return "." in self.link

    def pack(
        self,
        kind: str,
        content: dict[str, Any] | None = None,
        blobs: tuple[bytes, ...] | list[bytes] = (),
        re: str | None = None,
    ) -> list[bytes]:
        """Encode and sign a message; returns the frames to send (without routing id)."""
        self._seq += 1
        header = {
            "msg_id": self._prefix + str(self._seq),
            "type": kind,
            "session": self.session,
            "seq": self._seq,
            "re": re,
            "date": time.time(),
            "link": self.link,
        }
        parts = [_dumps(header), _dumps(content or {}), *blobs]
        return [PROTOCOL_TAG, sign(self.key, parts), *parts]

    def accept(self, frames: list[bytes], message: Message | None = None) -> Message:
        """Parse (unless ``message`` is given), verify the signature, and refuse a message dated
        outside the window, bound to another connection, or replayed."""
        if message is None:
            message = parse(frames)
        expected = sign(self.key, frames[2:])
        if not hmac.compare_digest(expected, bytes(frames[1])):
            raise ProtocolError("bad-signature", f"{message.type} from session {message.session[:12]}")
        skew = message.header["date"] - time.time()
        if abs(skew) > DATE_WINDOW:
            raise ProtocolError("stale", f"{message.type} dated {skew:+.0f} s from now")
        if message.header.get("link") != self.link:
            raise ProtocolError("wrong-link", f"{message.type} bound to another connection")
        last = self._last_seq.get(message.session, 0)
        if message.header["seq"] <= last:
            raise ProtocolError("replay", f"seq {message.header['seq']} <= {last}")
        self._last_seq[message.session] = message.header["seq"]
        return message


def unsigned(kind: str, content: dict[str, Any]) -> list[bytes]:
    """An unsigned message, used only for refusals to a peer whose key is unknown or wrong.

    A worker treats an unsigned ``disconnect`` as "say hello again later"; it never acts on any
    other unsigned message.
    """
    header = {
        "msg_id": uuid.uuid4().hex,
        "type": kind,
        "session": "",
        "seq": 0,
        "re": None,
        "date": time.time(),
        "link": "",
    }
    return [PROTOCOL_TAG, b"", _dumps(header), _dumps(content)]
