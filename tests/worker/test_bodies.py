"""The bodies of the protocol's messages (``flowbot_worker/bodies.py``): each encodes to what the other
end decodes, and a body the receiver cannot act on is refused as the protocol's error."""

from __future__ import annotations

import json

import pytest
from flowbot_worker import protocol
from flowbot_worker.bodies import (
    Challenge,
    CommandResult,
    Disconnect,
    FileCredit,
    FileData,
    Finished,
    FinishedAck,
    Heartbeat,
    Hello,
    Interrupt,
    Output,
    OutputAck,
    Shutdown,
    StartCommand,
    Welcome,
    decode_ack,
)
from flowbot_worker.errors import ProtocolError

NONCE = protocol.nonce()

#: One body of each kind, with the blob it travels with (if any).
BODIES = [
    StartCommand("r1.b1.s0.c1", "shell", {"command": "make", "timeout": 60}),
    Interrupt("r1.b1.s0.c1", "stopped by alice", 2.5),
    Finished("r1.b1.s0.c1", 0, None, "", 1.25, {"got_revision": "abc"}, {"stdout": 10, "stderr": 0}),
    Finished("r1.b1.s0.c1", None, "timeout", "killed after 60 s", 60.0),
    Output("r1.b1.s0.c1", "stdout", 4096, b"make: done\n"),
    Hello("w1", protocol.VERSION, {"hostname": "h"}, {"c1": {"offsets": {"stdout": [0, 4]}, "finished": True}}),
    Challenge(NONCE),
    Welcome(5.0, 3, ["c2"], {"c1": {"stdout": 4}}, {"flush_bytes": 65536, "flush_delay": 0.2, "window": 4 << 20}, 60.0),
    Disconnect("the master is shutting down"),
    Disconnect("unknown worker", final=True),
    Shutdown(graceful=False),
    Heartbeat(),
    FileData("r1.b1.s2.c1", 3, True, b"\x00\x01"),
    FileCredit("r1.b1.s2.c1", 2),
]


def _blobs(body) -> tuple[bytes, ...]:
    return (body.data,) if isinstance(body, (Output, FileData)) else ()


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_each_body_decodes_to_what_was_encoded(body):
    # Through JSON, as the link carries it
    assert type(body).decode(json.loads(json.dumps(body.encode())), _blobs(body)) == body


@pytest.mark.parametrize("ack", [OutputAck("c1", {"stdout": 4, "stderr": 0}), FinishedAck(["c1", "c2"])])
def test_an_ack_decodes_to_what_it_acknowledges(ack):
    assert decode_ack(json.loads(json.dumps(ack.encode()))) == ack


def test_the_wire_keeps_the_shape_older_peers_read():
    # An acknowledgement of results names the first command alone too, for workers that read only that
    assert FinishedAck(["c1", "c2"]).encode() == {"of": "finished", "cmd_ids": ["c1", "c2"], "cmd_id": "c1"}
    # and one from a master that acknowledged one result per message is still read
    assert decode_ack({"of": "finished", "cmd_id": "c1"}) == FinishedAck(["c1"])
    assert OutputAck("c1", {"stdout": 4}).encode() == {"cmd_id": "c1", "of": "output", "offsets": {"stdout": 4}}
    assert Output("c1", "stderr", 7, b"x").encode() == {"cmd_id": "c1", "stream": "stderr", "offset": 7}
    assert Disconnect("bye").encode() == {"reason": "bye"}
    assert Disconnect("no", final=True).encode() == {"reason": "no", "final": True}
    assert FileData("c1", 0, False, b"").encode() == {"cmd_id": "c1", "seq": 0, "final": False}
    assert Heartbeat().encode() == {}


@pytest.mark.parametrize("kind", [StartCommand, Interrupt, Finished, Output, FileData, FileCredit, OutputAck])
@pytest.mark.parametrize("cmd_id", [None, 7, ["c1"], {"id": "c1"}])
def test_a_body_naming_its_command_by_anything_but_a_string_is_refused(kind, cmd_id):
    with pytest.raises(ProtocolError) as refused:
        kind.decode(
            {
                "cmd_id": cmd_id,
                "name": "shell",
                "args": {},
                "rc": 0,
                "stream": "stdout",
                "offset": 0,
                "seq": 0,
                "credits": 1,
                "offsets": {},
            },
            (b"x",),
        )
    assert refused.value.reason == "bad-body"


def test_a_start_command_without_arguments_is_refused():
    with pytest.raises(ProtocolError, match="no args object"):
        StartCommand.decode({"cmd_id": "c1", "name": "shell", "args": "make"})


#: Bodies that cannot be acted on: a field needed missing, or of the wrong type.
MALFORMED = [
    (Output, {"cmd_id": "c1", "offset": 0}, "no stream and offset"),
    (Output, {"cmd_id": "c1", "stream": "stdout", "offset": "0"}, "no stream and offset"),
    (Output, {"cmd_id": "c1", "stream": "stdout", "offset": -1}, "no stream and offset"),
    (Output, {"cmd_id": "c1", "stream": "stdout", "offset": True}, "no stream and offset"),
    (OutputAck, {"cmd_id": "c1", "of": "output"}, "no offsets by stream"),
    (OutputAck, {"cmd_id": "c1", "of": "output", "offsets": {"stdout": 2.5}}, "no offsets by stream"),
    (FinishedAck, {"of": "finished", "cmd_ids": "c1"}, "list of string ids"),
    (FinishedAck, {"of": "finished", "cmd_ids": ["c1", 2]}, "list of string ids"),
    (FinishedAck, {"of": "finished"}, "not a string id"),
    (decode_ack, {"of": "hello", "cmd_id": "c1"}, "neither output nor finished"),
    (Hello, {"version": 2, "info": {}, "held": {}}, "names its worker by NoneType"),
    (Hello, {"name": ["w1"], "version": 2}, "names its worker by list"),
    (Challenge, {}, "without a nonce"),
    (Challenge, {"nonce": "not hex"}, "without a nonce"),
    (Welcome, {"liveness": 3}, "positive heartbeat and liveness"),
    (Welcome, {"heartbeat": "5", "liveness": 3}, "positive heartbeat and liveness"),
    (Welcome, {"heartbeat": 5.0, "liveness": 0}, "positive heartbeat and liveness"),
    (Welcome, {"heartbeat": float("nan"), "liveness": 3}, "positive heartbeat and liveness"),
    (Welcome, {"heartbeat": 2**2000, "liveness": 3}, "positive heartbeat and liveness"),
    (Welcome, {"heartbeat": 5.0, "liveness": 3, "cancel": [["c1"]]}, "cancel is not a list of command ids"),
    (Welcome, {"heartbeat": 5.0, "liveness": 3, "resume": {"c1": 4}}, "resume is not offsets"),
    (Welcome, {"heartbeat": 5.0, "liveness": 3, "output": {"window": -1}}, "output settings"),
    (Shutdown, {"graceful": "yes"}, "graceful or not"),
    (FileData, {"cmd_id": "c1", "final": True}, "without a chunk number"),
    (FileData, {"cmd_id": "c1", "seq": 0, "final": 1}, "without a chunk number"),
    (FileCredit, {"cmd_id": "c1", "credits": 0}, "grants no chunks"),
    (FileCredit, {"cmd_id": "c1", "credits": "1"}, "grants no chunks"),
]


@pytest.mark.parametrize(("decode", "content", "why"), MALFORMED, ids=lambda v: getattr(v, "__name__", None))
def test_a_body_missing_a_field_it_needs_or_with_one_of_the_wrong_type_is_refused(decode, content, why):
    decode = getattr(decode, "decode", decode)
    with pytest.raises(ProtocolError, match=why) as refused:
        decode(content, (b"x",))
    assert refused.value.reason == "bad-body"


@pytest.mark.parametrize("kind", [Output, FileData])
@pytest.mark.parametrize("blobs", [(), (b"a", b"b")])
def test_a_body_whose_bytes_ride_as_a_blob_is_refused_without_exactly_one(kind, blobs):
    with pytest.raises(ProtocolError, match=f"carries {len(blobs)} blobs") as refused:
        kind.decode({"cmd_id": "c1", "stream": "stdout", "offset": 0, "seq": 0, "final": True}, blobs)
    assert refused.value.reason == "bad-body"


def test_a_finished_command_still_ends_when_a_field_it_can_do_without_is_wrong():
    # Given a result whose fields are of the wrong kinds, but which names its command
    finished = Finished.decode({"cmd_id": "c1", "rc": "0", "reason": 3, "elapsed": "1.5", "data": [1], "offsets": 2})

    # Then the command ends, with what could not be read left out
    assert finished.result() == CommandResult(None, None, "", 0.0, data={})
    assert Interrupt.decode({"cmd_id": "c1", "grace": "soon"}).grace == Interrupt("c1").grace
    assert Finished.decode({"cmd_id": "c1", "elapsed": 2**2000}).elapsed == 0.0


def test_what_a_body_can_do_without_is_read_as_missing():
    # A hello whose host information and held commands are no objects still names its worker
    assert Hello.decode({"name": "w1", "version": "1", "info": [], "held": 3}) == Hello("w1", "1", {}, {})
    # A goodbye is one whatever its reason; only a final refusal that says so is final
    assert Disconnect.decode({"reason": ["?"], "final": "yes"}) == Disconnect()
    # A welcome from an older master leaves the worker's output settings as they are, and ignores new ones
    assert Welcome.decode({"heartbeat": 1, "liveness": 2, "output": {"compress": "zstd"}}) == Welcome(1.0, 2)
    # A heartbeat carries nothing, whatever comes with it
    assert Heartbeat.decode({"extra": 1}) == Heartbeat()
