"""Tests for ``flowbot_worker.protocol``: FBP1 framing, signatures, replay protection, malformed input.

Every way a peer can get a message wrong must end in :class:`ProtocolError` with a stable ``reason``,
because the master and the worker count and drop such messages; any other exception would take the
receiving loop down.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from flowbot_worker import protocol
from flowbot_worker.defaults import DATE_WINDOW, MAX_BLOB_BYTES, MAX_CONTENT_BYTES, MAX_HEADER_BYTES, PROTOCOL_TAG
from flowbot_worker.errors import ProtocolError

KEY = b"worker-secret"


def header(**fields: object) -> bytes:
    """A valid ``ack`` header, with ``fields`` overriding (a value of ``...`` removes the field)."""
    h = {"msg_id": "m-1", "type": protocol.ACK, "session": "s1", "seq": 1, "re": None, "date": 0.0}
    h.update(fields)
    return json.dumps({k: v for k, v in h.items() if v is not ...}).encode()


def frames(raw_header: bytes | None = None, raw_content: bytes = b"{}", *blobs: bytes) -> list[bytes]:
    return [PROTOCOL_TAG, b"", header() if raw_header is None else raw_header, raw_content, *blobs]


# -- a message that goes through ------------------------------------------------------------------


def test_packed_message_is_accepted_with_its_type_content_and_blobs() -> None:
    # Given a worker and a master sharing a key
    worker, master = protocol.Channel(KEY), protocol.Channel(KEY)

    # When the worker packs an output message with blobs and the master accepts it
    sent = worker.pack(protocol.OUTPUT, {"cmd_id": "c1", "stream": "stdout", "ünïcode": "✓"}, (b"\x00\xff", b"tail"))
    message = master.accept(sent)

    # Then the master sees exactly what was sent, and who sent it
    assert sent[0] == PROTOCOL_TAG
    assert message.type == protocol.OUTPUT
    assert message.content == {"cmd_id": "c1", "stream": "stdout", "ünïcode": "✓"}
    assert message.blobs == (b"\x00\xff", b"tail")
    assert message.session == worker.session
    assert message.header["re"] is None


def test_reply_names_the_message_it_answers() -> None:
    worker, master = protocol.Channel(KEY), protocol.Channel(KEY)
    hello = master.accept(worker.pack(protocol.HELLO, {"name": "w1"}))

    welcome = worker.accept(master.pack(protocol.WELCOME, {}, re=hello.msg_id))

    assert welcome.header["re"] == hello.msg_id


def test_each_packed_message_has_a_new_id_and_a_higher_seq() -> None:
    channel = protocol.Channel(KEY, session="fixed-session-id")

    first, second = (protocol.parse(channel.pack(protocol.HEARTBEAT)) for _ in range(2))

    assert first.session == second.session == "fixed-session-id"
    assert first.msg_id != second.msg_id
    assert second.header["seq"] > first.header["seq"]


def test_every_process_gets_its_own_session() -> None:
    assert protocol.Channel(KEY).session != protocol.Channel(KEY).session


def test_content_defaults_to_an_empty_object() -> None:
    assert protocol.Channel(b"").accept(protocol.Channel(b"").pack(protocol.HEARTBEAT)).content == {}


def test_content_with_a_lone_surrogate_survives_the_round_trip() -> None:
    # JSON can carry "\udc80" (json.loads produces such strings from a peer's escapes), so a message
    # echoing a peer's text, such as a refused workdir, must still pack.
    worker, master = protocol.Channel(KEY), protocol.Channel(KEY)

    message = master.accept(worker.pack(protocol.FINISHED, {"message": "bad dir \udc80\\\udc81"}))

    assert message.content == {"message": "bad dir \udc80\\\udc81"}


# -- signatures -----------------------------------------------------------------------------------


def test_sign_is_hmac_sha256_over_header_content_and_blobs() -> None:
    parts = [b"header", b"content", b"blob"]

    assert protocol.sign(KEY, parts) == hmac.new(KEY, b"headercontentblob", hashlib.sha256).hexdigest().encode()


def test_wrong_key_is_refused_as_bad_signature() -> None:
    sent = protocol.Channel(b"one key").pack(protocol.HELLO, {"name": "w1"})

    with pytest.raises(ProtocolError) as caught:
        protocol.Channel(b"another key").accept(sent)

    assert caught.value.reason == "bad-signature"


@pytest.mark.parametrize("index", [2, 3, 4], ids=["header", "content", "blob"])
def test_any_tampered_frame_is_refused_as_bad_signature(index: int) -> None:
    sent = protocol.Channel(KEY).pack(protocol.OUTPUT, {"cmd_id": "c1"}, (b"output",))
    # Swap one character for another so the frame stays well-formed JSON.
    sent[index] = sent[index].replace(b"1", b"2") if index != 4 else b"outpuT"

    with pytest.raises(ProtocolError) as caught:
        protocol.Channel(KEY).accept(sent)

    assert caught.value.reason == "bad-signature"


def test_empty_key_means_no_signature_on_both_sides() -> None:
    sent = protocol.Channel(b"").pack(protocol.HEARTBEAT)

    assert sent[1] == b""
    assert protocol.sign(b"", sent[2:]) == b""
    assert protocol.Channel(b"").accept(sent).type == protocol.HEARTBEAT


def test_keyed_channel_refuses_an_unsigned_message() -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.Channel(KEY).accept(protocol.Channel(b"").pack(protocol.SHUTDOWN))

    assert caught.value.reason == "bad-signature"


def test_unkeyed_channel_refuses_a_signed_message() -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.Channel(b"").accept(protocol.Channel(KEY).pack(protocol.SHUTDOWN))

    assert caught.value.reason == "bad-signature"


def test_unsigned_disconnect_parses_but_is_never_accepted_as_signed() -> None:
    sent = protocol.unsigned(protocol.DISCONNECT, {"reason": "unknown worker"})

    message = protocol.parse(sent)

    assert sent[1] == b""
    assert message.type == protocol.DISCONNECT
    assert message.content == {"reason": "unknown worker"}
    with pytest.raises(ProtocolError) as caught:
        protocol.Channel(KEY).accept(sent)
    assert caught.value.reason == "bad-signature"


# -- replays --------------------------------------------------------------------------------------


def test_the_same_frames_twice_are_refused_as_replay() -> None:
    sent = protocol.Channel(KEY).pack(protocol.INTERRUPT, {"cmd_id": "c1"})
    receiver = protocol.Channel(KEY)
    receiver.accept(sent)

    with pytest.raises(ProtocolError) as caught:
        receiver.accept(sent)

    assert caught.value.reason == "replay"


def test_an_older_message_after_a_newer_one_is_refused_as_replay() -> None:
    sender, receiver = protocol.Channel(KEY), protocol.Channel(KEY)
    older, newer = sender.pack(protocol.HEARTBEAT), sender.pack(protocol.HEARTBEAT)
    receiver.accept(newer)

    with pytest.raises(ProtocolError) as caught:
        receiver.accept(older)

    assert caught.value.reason == "replay"


def test_sessions_are_tracked_apart() -> None:
    # Given two worker processes whose first messages both carry seq 1
    receiver = protocol.Channel(KEY)
    first, second = protocol.Channel(KEY), protocol.Channel(KEY)

    # When both reach the master
    accepted = [receiver.accept(first.pack(protocol.HELLO)), receiver.accept(second.pack(protocol.HELLO))]

    # Then neither is a replay of the other
    assert [m.header["seq"] for m in accepted] == [1, 1]


def handshake(worker: protocol.Channel, master: protocol.Channel) -> None:
    """Open a connection between the two channels as the protocol does: hello, challenge, hello."""
    worker.open()
    hello = worker.pack(protocol.HELLO, {"name": "w1"})
    master.open(protocol.parse(hello).header["link"])
    master.accept(hello)
    challenge = protocol.nonce()
    worker.accept(master.pack(protocol.CHALLENGE, {"nonce": challenge}))
    master.extend(challenge)
    worker.extend(challenge)
    master.accept(worker.pack(protocol.HELLO, {"name": "w1"}))


def test_both_nonces_bind_every_message_of_a_connection() -> None:
    worker, master = protocol.Channel(KEY), protocol.Channel(KEY)

    handshake(worker, master)

    assert worker.bound and master.bound and worker.link == master.link
    assert worker.link.split(".")[0] != worker.link.split(".")[1]
    assert master.accept(worker.pack(protocol.HEARTBEAT)).header["link"] == worker.link
    assert worker.accept(master.pack(protocol.START_COMMAND, {"cmd_id": "c1"})).content == {"cmd_id": "c1"}


def test_a_message_captured_on_one_connection_is_refused_on_the_next_whoever_restarted() -> None:
    # Given a connection on which a heartbeat from the worker and a start_command from the master pass
    worker, master = protocol.Channel(KEY), protocol.Channel(KEY)
    handshake(worker, master)
    heartbeat = worker.pack(protocol.HEARTBEAT)
    start = master.pack(protocol.START_COMMAND, {"cmd_id": "c1"})
    master.accept(heartbeat)
    worker.accept(start)

    # When the worker opens another connection (a reconnect), a restarted worker does, or a restarted master
    reconnected = (worker, master)
    worker_restarted = (protocol.Channel(KEY), master)
    master_restarted = (worker, protocol.Channel(KEY))
    for new_worker, new_master in (reconnected, worker_restarted, master_restarted):
        handshake(new_worker, new_master)

        # Then neither captured message counts on it, though both are signed and fresh
        for receiver, captured in ((new_master, heartbeat), (new_worker, start)):
            with pytest.raises(ProtocolError) as caught:
                receiver.accept(captured)
            assert caught.value.reason == "wrong-link"


def test_a_first_hello_replayed_on_its_own_gets_no_further_than_a_challenge() -> None:
    # Given a worker's first hello, captured
    worker = protocol.Channel(KEY)
    worker.open()
    captured = worker.pack(protocol.HELLO, {"name": "w1"})

    # When a master that challenged it gets a hello signed over another challenge (an earlier one)
    master = protocol.Channel(KEY)
    master.open(protocol.parse(captured).header["link"])
    master.accept(captured)
    master.extend(protocol.nonce())
    worker.extend(protocol.nonce())

    # Then that hello is refused
    with pytest.raises(ProtocolError) as caught:
        master.accept(worker.pack(protocol.HELLO, {"name": "w1"}))
    assert caught.value.reason == "wrong-link"


@pytest.mark.parametrize("offset", [-DATE_WINDOW - 5, DATE_WINDOW + 5])
def test_a_message_dated_outside_the_window_is_refused_as_stale(offset: float, monkeypatch) -> None:
    sender, receiver = protocol.Channel(KEY), protocol.Channel(KEY)
    sent = sender.pack(protocol.HEARTBEAT)
    within = sender.pack(protocol.HEARTBEAT)
    now = time.time()

    monkeypatch.setattr(time, "time", lambda: now - offset)
    with pytest.raises(ProtocolError) as caught:
        receiver.accept(sent)
    monkeypatch.setattr(time, "time", lambda: now - offset * 0.9)

    assert caught.value.reason == "stale"
    assert receiver.accept(within).type == protocol.HEARTBEAT


def test_nonces_are_fresh_and_only_their_shape_passes() -> None:
    assert protocol.nonce() != protocol.nonce()
    assert protocol.is_nonce(protocol.nonce())
    for wrong in ("", "0" * 31, "0" * 33, "g" * 32, "A" * 32, f"{protocol.nonce()}.{protocol.nonce()}", 7, None):
        assert not protocol.is_nonce(wrong)


def test_a_refused_signature_does_not_advance_the_replay_state() -> None:
    # Given a forged message claiming a high seq for a real session
    sender, receiver = protocol.Channel(KEY, session="real"), protocol.Channel(KEY)
    forged = protocol.Channel(b"attacker", session="real")
    for _ in range(3):
        with pytest.raises(ProtocolError):
            receiver.accept(forged.pack(protocol.HEARTBEAT))

    # When the real sender goes on with its own seq
    # Then it is still accepted
    assert receiver.accept(sender.pack(protocol.HEARTBEAT)).session == "real"


def test_accept_reuses_an_already_parsed_message() -> None:
    sent = protocol.Channel(KEY).pack(protocol.HELLO, {"name": "w1"})
    parsed = protocol.parse(sent)

    assert protocol.Channel(KEY).accept(sent, parsed) is parsed


# -- malformed input ------------------------------------------------------------------------------

MALFORMED = {
    "no frames": ([], "short"),
    "three frames": ([PROTOCOL_TAG, b"", header()], "short"),
    "other tag": ([b"FBP2", b"", header(), b"{}"], "bad-tag"),
    "empty tag": ([b"", b"", header(), b"{}"], "bad-tag"),
    "header not json": (frames(b"{nope"), "bad-json"),
    "content not json": (frames(None, b"[1,"), "bad-json"),
    "empty header": (frames(b""), "bad-json"),
    "header not utf-8": (frames(b'{"type": "\xff"}'), "bad-json"),
    "header is a list": (frames(b"[]"), "bad-json"),
    "content is a string": (frames(None, b'"text"'), "bad-json"),
    "content is null": (frames(None, b"null"), "bad-json"),
    "deeply nested header": (frames(b"[" * (MAX_HEADER_BYTES - 1)), "bad-json"),
    "deeply nested content": (frames(None, b'{"a":' + b"[" * 100_000), "bad-json"),
    "unknown type": (frames(header(type="exec")), "bad-type"),
    "missing type": (frames(header(type=...)), "bad-type"),
    "type is a number": (frames(header(type=7)), "bad-type"),
    "type is a list": (frames(header(type=["ack"])), "bad-type"),
    "type is an object": (frames(header(type={"ack": 1})), "bad-type"),
    "missing session": (frames(header(session=...)), "bad-header"),
    "session is a number": (frames(header(session=1)), "bad-header"),
    "missing seq": (frames(header(seq=...)), "bad-header"),
    "seq is a string": (frames(header(seq="1")), "bad-header"),
    "seq is a float": (frames(header(seq=1.0)), "bad-header"),
    "missing msg_id": (frames(header(msg_id=...)), "bad-header"),
    "msg_id is null": (frames(header(msg_id=None)), "bad-header"),
    "missing date": (frames(header(date=...)), "bad-header"),
    "date is a string": (frames(header(date="now")), "bad-header"),
    "date is not a number": (frames(header(date=float("nan"))), "bad-header"),
    "date too large for a float": (frames(header(date=10**400)), "bad-header"),
    "oversized header": (frames(header(pad="x" * MAX_HEADER_BYTES)), "oversized"),
    "oversized content": (frames(None, b'{"a":"' + b"x" * MAX_CONTENT_BYTES + b'"}'), "oversized"),
    "oversized blob": (frames(None, b"{}", b"x" * (MAX_BLOB_BYTES + 1)), "oversized"),
    "oversized blobs together": (frames(None, b"{}", b"x" * MAX_BLOB_BYTES, b"x"), "oversized"),
}


@pytest.mark.parametrize(("raw", "reason"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frames_raise_protocol_error_with_a_reason(raw: list[bytes], reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.parse(raw)

    assert caught.value.reason == reason


@pytest.mark.parametrize(("raw", "reason"), MALFORMED.values(), ids=MALFORMED.keys())
def test_accept_refuses_malformed_frames_before_checking_anything_else(raw: list[bytes], reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.Channel(b"").accept(raw)

    assert caught.value.reason == reason


def test_blobs_up_to_the_limit_are_accepted() -> None:
    blob = b"x" * MAX_BLOB_BYTES

    assert protocol.parse(frames(None, b"{}", blob)).blobs == (blob,)


def test_protocol_error_reads_as_reason_and_detail() -> None:
    with pytest.raises(ProtocolError, match=r"^short: 0 frames$"):
        protocol.parse([])
