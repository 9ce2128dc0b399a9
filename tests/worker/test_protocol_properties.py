"""Property tests for ``flowbot_worker.protocol``: no input a peer can send makes ``parse`` or
``accept`` fail with anything but :class:`ProtocolError`, and whatever is packed comes back intact.

Needs hypothesis (a test dependency). The strategies build headers from arbitrary JSON values, because
raw random bytes almost never get past the JSON decoder to the checks on the fields. Strings include
lone surrogates, which JSON can carry ("\\udc80") and UTF-8 cannot.
"""

from __future__ import annotations

import contextlib
import json

from flowbot_worker import protocol
from flowbot_worker.defaults import PROTOCOL_TAG
from flowbot_worker.errors import ProtocolError
from hypothesis import given, settings
from hypothesis import strategies as st

#: No example database: it would be written into the working tree.
examples = settings(database=None, max_examples=200)

texts = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)

#: A header that is sometimes right and often wrong in one field or another.
headers = st.fixed_dictionaries(
    {},
    optional={
        "msg_id": texts | json_values,
        "type": st.sampled_from(sorted(protocol.TYPES)) | json_values,
        "session": texts | json_values,
        "seq": st.integers() | json_values,
        "re": st.none() | texts,
    },
)


def parse_or_refuse(frames: list[bytes]) -> protocol.Message | None:
    """``parse(frames)``, or None when it refuses them with a ProtocolError that has a reason."""
    try:
        return protocol.parse(frames)
    except ProtocolError as exc:
        assert exc.reason
        return None


@examples
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_arbitrary_frames_only_ever_raise_protocol_error(frames: list[bytes]) -> None:
    message = parse_or_refuse(frames)
    assert message is None or message.type in protocol.TYPES


@examples
@given(st.lists(st.binary(max_size=64), max_size=4))
def test_arbitrary_frames_after_the_tag_only_ever_raise_protocol_error(rest: list[bytes]) -> None:
    message = parse_or_refuse([PROTOCOL_TAG, *rest])
    assert message is None or message.type in protocol.TYPES


@examples
@given(headers, json_values, st.lists(st.binary(max_size=16), max_size=3))
def test_arbitrary_json_fields_only_ever_raise_protocol_error(
    header: dict, content: object, blobs: list[bytes]
) -> None:
    frames = [PROTOCOL_TAG, b"", json.dumps(header).encode(), json.dumps(content).encode(), *blobs]

    message = parse_or_refuse(frames)

    if message is not None:
        assert message.type in protocol.TYPES
        assert isinstance(message.session, str)
        assert isinstance(message.msg_id, str)
        assert message.blobs == tuple(blobs)
    with contextlib.suppress(ProtocolError):
        protocol.Channel(b"").accept(frames)


@examples
@given(
    st.sampled_from(sorted(protocol.TYPES)),
    json_objects,
    st.lists(st.binary(max_size=64), max_size=3),
    st.binary(max_size=32),
)
def test_whatever_is_packed_is_accepted_unchanged(kind: str, content: dict, blobs: list[bytes], key: bytes) -> None:
    message = protocol.Channel(key).accept(protocol.Channel(key).pack(kind, content, blobs))

    assert (message.type, message.content, message.blobs) == (kind, content, tuple(blobs))
