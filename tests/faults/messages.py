"""Hypothesis strategies for FBP1 messages: well-formed but wrong, and plain garbage.

Types and header fields come from :mod:`flowbot_worker.protocol`; :data:`FIELDS` lists the content
fields of each type, as the protocol's table describes them. A wrong message keeps the shape and
puts anything JSON can hold where a field goes (a string for a number, NaN, a list, a huge
integer, nothing at all), names commands the master really started, or ones it did not, and
carries any number of blobs. Garbage is frames of random bytes, or a real message with bytes
flipped.
"""

from __future__ import annotations

from typing import Any

from flowbot_worker import protocol
from hypothesis import strategies as st

#: The content fields of each message type.
FIELDS: dict[str, tuple[str, ...]] = {
    protocol.HELLO: ("name", "version", "info", "held"),
    protocol.CHALLENGE: ("nonce",),
    protocol.WELCOME: ("heartbeat", "liveness", "cancel", "resume", "output"),
    protocol.DISCONNECT: ("reason", "final"),
    protocol.START_COMMAND: ("cmd_id", "name", "args"),
    protocol.OUTPUT: ("cmd_id", "stream", "offset"),
    protocol.FINISHED: ("cmd_id", "rc", "elapsed", "reason", "message", "data", "offsets"),
    protocol.INTERRUPT: ("cmd_id", "reason", "grace"),
    protocol.SHUTDOWN: ("graceful",),
    protocol.HEARTBEAT: (),
    protocol.ACK: ("of", "cmd_ids", "offsets"),
    protocol.FILE_DATA: ("cmd_id", "seq"),
    protocol.FILE_CREDIT: ("cmd_id", "credits"),
}
assert set(FIELDS) == protocol.TYPES, "every type of the protocol has its fields here"

#: The header fields :meth:`protocol.Channel.pack` writes.
HEADER_FIELDS = ("msg_id", "type", "session", "seq", "re", "date", "link")

#: Any JSON value, NaN and infinities included (Python's json reads them).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**200)
    | st.floats()
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)

#: Values a field might plausibly hold, so a message gets past the first check and deeper in.
_PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "stream": st.sampled_from(["stdout", "stderr", "header", ""]),
    "offset": st.integers(min_value=-(2**40), max_value=2**40),
    "rc": st.integers(min_value=-(2**31), max_value=2**31),
    "elapsed": st.floats(),
    "seq": st.integers(min_value=-2, max_value=5),
    "credits": st.integers(min_value=-5, max_value=2**31),
    "version": st.sampled_from([protocol.VERSION, protocol.VERSION - 1, 0]),
    "reason": st.sampled_from([protocol.INVALID, "", "bye"]),
    "of": st.sampled_from(sorted(protocol.TYPES)),
    "nonce": st.just(protocol.nonce()),
}


@st.composite
def content(draw: st.DrawFn, kind: str, commands: list[str]) -> dict[str, Any]:
    """A content object for ``kind``: some of its fields, each plausible or anything, and maybe more."""
    names = [n for n in FIELDS[kind] if draw(st.booleans())] if FIELDS[kind] else []
    body: dict[str, Any] = {}
    for name in names:
        if name == "cmd_id":  # one of the last commands started, or anything (drawn alike whatever there is)
            recent = draw(st.integers(0, 4))
            body[name] = commands[-1 - recent % len(commands)] if recent < 4 and commands else draw(json_values)
        elif name in _PLAUSIBLE and draw(st.booleans()):
            body[name] = draw(_PLAUSIBLE[name])
        else:
            body[name] = draw(json_values)
    body.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return body


blobs = st.lists(st.binary(max_size=64), max_size=3).map(tuple)

#: Frames of random bytes, some of them starting as FBP1 does.
garbage = st.lists(
    st.binary(max_size=80) | st.just(b"FBP1") | st.just(b"{}") | st.just(b"\xff\xfe"),
    max_size=6,
)


def flip(frames: list[bytes], where: int, value: int) -> list[bytes]:
    """``frames`` with one byte (counted across all of them) replaced by ``value``."""
    out, at = [], where % max(1, sum(len(f) for f in frames))
    for frame in frames:
        if 0 <= at < len(frame):
            frame = frame[:at] + bytes([value]) + frame[at + 1 :]
        at -= len(frame)
        out.append(frame)
    return out
