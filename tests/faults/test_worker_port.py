"""Hostile input on the worker port: protocol-aware fuzzing by a worker that knows its secret, garbage
frames and bytes, a recorded link replayed, and CURVE handshakes that must fail. Through all of it
the master stays up, keeps building for the real worker, never fails inside (no traceback, nothing
counted as an internal error) and welcomes no one it should not."""

from __future__ import annotations

import os
import socket
import time

import pytest
import zmq
from flowbot_worker import protocol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..e2e.test_curve import Keys
from ..e2e.test_link_security import _got_nowhere
from ..support import MasterProcess, dropped_messages, finished_builds, wait_for
from .messages import HEADER_FIELDS, blobs, content, flip, garbage, json_values
from .peer import Peer

#: Examples of each fuzzer (FLOWBOT_FUZZ_EXAMPLES asks for more: benchmarks/README.md).
EXAMPLES = int(os.environ.get("FLOWBOT_FUZZ_EXAMPLES", 400))

PIPELINE = """
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, FileUpload
pipeline = Pipeline(
    workers=[Worker("fz", secret="fz-secret"), Worker("w1", secret="s1")],
    schedulers=[ForceScheduler("force", builders=["fuzzed", "real"])],
    builders=[
        Builder("fuzzed", workers=["fz"], steps=[
            Shell("echo fuzzed", name="shell"),
            FileUpload("out.bin", "artifacts/out.bin", name="upload"),
        ]),
        Builder("real", workers=["w1"], collapse_requests=False, steps=[Shell("echo real", name="real")]),
    ],
)
"""

#: The real worker alone (what a replay is checked against).
ALONE = """
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
pipeline = Pipeline(
    workers=[Worker("w1", secret="s1")],
    schedulers=[ForceScheduler("force", builders=["real"])],
    builders=[Builder("real", workers=["w1"], collapse_requests=False, steps=[Shell("echo real", name="real")])],
)
"""

FUZZING = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

#: A master and workers start, then the examples run (each takes a few milliseconds, or a few tens).
pytestmark = pytest.mark.timeout(300 + EXAMPLES // 5)


def still_building(master: MasterProcess, builds: int) -> None:
    """The master is up, has built every ``real`` request it took (``builds`` of them), failed inside
    nowhere, and builds another one."""
    master.client.force("real")
    done = finished_builds(master.client, builds + 1, timeout=60, builder="real")
    assert {b["result"] for b in done} == {"SUCCESS"}
    assert master.alive()
    assert "internal-error" not in dropped_messages(master.client)
    assert "Traceback" not in master.log()


def test_a_command_named_by_anything_but_a_string_is_none_and_a_result_of_the_wrong_kind_still_ends_it(
    master_factory,
):
    # Given a worker running a command
    master = master_factory(PIPELINE)
    peer = Peer(master.endpoint, "fz", "fz-secret")
    try:
        peer.handshake()
        master.client.force("fuzzed")
        (cmd_id,) = wait_for(lambda: peer.drain(0.1) is not None and peer.commands, 20, "a command")

        # When it names commands by objects and lists, and reports its command's time as a word
        for kind in (protocol.OUTPUT, protocol.FINISHED, protocol.FILE_DATA, protocol.FILE_CREDIT):
            peer.send(kind, {"cmd_id": {"a": 1}, "credits": 1}, (b"x",))
            peer.send(kind, {"cmd_id": ["x"], "credits": 1}, (b"x",))
        peer.send(protocol.FINISHED, {"cmd_id": cmd_id, "rc": 3, "elapsed": "soon"})

        # Then those name no command, and the command ends, without the master failing inside
        def ended() -> str | None:
            peer.drain(0.1)  # answering the master's heartbeats
            (build,) = master.client.builds(builder="fuzzed")
            return master.client.request("GET", f"/api/builds/{build['id']}")["steps"][0]["result"]

        assert wait_for(ended, 20, "the command to end") == "FAILURE"
    finally:
        peer.close()
    dropped = dropped_messages(master.client)
    assert (dropped.get("bad-output"), dropped.get("bad-file-data")) == (2, 2)
    assert "internal-error" not in dropped and "Traceback" not in master.log()


def test_a_worker_that_knows_its_secret_and_says_anything_harms_no_one(master_factory, worker_factory):
    # Given a master building for a real worker, and a build waiting on worker fz
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s1")
    peer = Peer(master.endpoint, "fz", "fz-secret")
    peer.handshake()
    master.client.force("fuzzed")
    wait_for(lambda: peer.drain(0.1) is not None and peer.commands, 20, "a command for fz")
    forced = examples = 0

    # When fz says whatever its secret lets it sign: every type, wrong fields, wrong headers, garbage
    @FUZZING
    @given(st.data())
    def speak(data: st.DataObject) -> None:
        nonlocal forced, examples
        if not peer.welcomed:
            peer.handshake()
        kind = data.draw(st.sampled_from(sorted(protocol.TYPES)))
        body = data.draw(content(kind, peer.commands))
        how = data.draw(st.sampled_from(["message", "header", "garbage", "flipped"]))
        if how == "message":
            peer.send(kind, body, data.draw(blobs))
        elif how == "header":
            changes = data.draw(st.dictionaries(st.sampled_from(HEADER_FIELDS), json_values, min_size=1, max_size=2))
            peer.send_with_header(kind, body, changes, data.draw(blobs))
        elif how == "garbage":
            peer.send_raw(data.draw(garbage.filter(bool)))
        else:
            frames = peer.channel.pack(kind, body, data.draw(blobs))
            peer.send_raw(flip(frames, data.draw(st.integers(0, 10**6)), data.draw(st.integers(0, 255))))
        peer.drain()
        examples += 1
        if examples % 50 == 0:  # the real worker keeps being asked to build
            master.client.force("real")
            forced += 1

    try:
        speak()
    finally:
        peer.close()

    # Then what it could not read was counted, not acted on, and the master built everything the
    # real worker was given, and builds on
    assert dropped_messages(master.client), "the fuzzed messages were never counted as dropped"
    still_building(master, forced)


def test_bytes_that_are_not_zeromq_on_the_worker_port_harm_no_one(master_factory, worker_factory):
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s1")

    # When connections send random bytes (some starting as a ZeroMQ greeting does) and go away
    @settings(FUZZING, max_examples=EXAMPLES // 4)
    @given(st.binary(max_size=300), st.booleans())
    def knock(noise: bytes, greeting: bool) -> None:
        with socket.create_connection(("127.0.0.1", master.zmq_port), timeout=5) as raw:
            raw.sendall((b"\xff" + bytes(8) + b"\x7f\x03\x00NULL" + bytes(16) if greeting else b"") + noise)

    knock()

    # Then the real worker is still connected, and the master builds on
    assert [w["name"] for w in master.client.workers() if w["connected"]] == ["w1"]
    still_building(master, 0)


def test_a_recorded_link_replayed_in_any_order_and_part_gets_nowhere(master_factory, worker_factory, proxy_to):
    # Given the link of a real worker, recorded while it built, and the worker still connected
    master = master_factory(ALONE)
    tap = proxy_to(master, record=True)
    real = worker_factory(master, "w1", "s1")
    master.client.force("real")
    finished_builds(master.client, 1, builder="real")
    captured = tap.worker_messages()

    # When any part of it, in any order, is replayed from a connection of the attacker's own
    @settings(FUZZING, max_examples=15)
    @given(st.lists(st.sampled_from(captured), min_size=1, max_size=len(captured)))
    def replay(messages: list[list[bytes]]) -> None:
        _got_nowhere(master, messages, expect_connected_pid=real.pid)

    replay()
    still_building(master, 1)


CURVE_PIPELINE = """
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
pipeline = Pipeline(
    workers=[Worker("w1", secret="s1", public_key={w1!r}), Worker("w2", secret="s2", public_key={w2!r})],
    schedulers=[ForceScheduler("force", builders=["real"])],
    builders=[Builder("real", workers=["w1"], collapse_requests=False, steps=[Shell("echo real", name="real")])],
    curve_key="master.key_secret",
)
"""


def test_curve_handshakes_that_must_fail_fail_and_the_declared_worker_builds(tmp_path, master_factory, worker_factory):
    # Given an encrypted master building for the declared w1
    keys = Keys(tmp_path)
    w1, w2 = keys.worker("w1"), keys.worker("w2")
    master = master_factory(CURVE_PIPELINE.format(w1=w1.public, w2=w2.public))
    worker_factory(master, "w1", "s1", env=keys.env("w1"))
    ctx = zmq.Context()

    # When others knock as w1, with its secret but not its key: no key, a key of their own, w2's
    # key, or w1's own key against a master key that is not this master's
    @settings(FUZZING, max_examples=30)
    @given(st.sampled_from(["plain", "own key", "w2's key", "wrong master key"]), st.booleans())
    def knock(how: str, twice: bool) -> None:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if how != "plain":
            public, secret = zmq.curve_keypair() if how == "own key" else (w2.public.encode(), w2.secret.encode())
            server = zmq.curve_keypair()[0] if how == "wrong master key" else keys.master.public.encode()
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server
            if how == "wrong master key":
                sock.curve_publickey, sock.curve_secretkey = w1.public.encode(), w1.secret.encode()
        try:
            sock.connect(master.endpoint)
            channel = protocol.Channel(b"s1")
            channel.open()
            for _ in range(1 + twice):
                sock.send_multipart(channel.pack(protocol.HELLO, {"name": "w1", "version": protocol.VERSION, "info": {}}))
            deadline = time.monotonic() + 0.3
            while (left := deadline - time.monotonic()) > 0:
                if sock.poll(int(left * 1000)):
                    answer = protocol.parse(sock.recv_multipart())
                    assert answer.type == protocol.DISCONNECT, (how, twice, answer)
        finally:
            sock.close()

    try:
        knock()
    finally:
        # Closes any socket left open, so a failing example fails the test instead of hanging it
        ctx.destroy(linger=0)

    # Then no one but the declared w1 is connected, and it builds
    assert [w["name"] for w in master.client.workers() if w["connected"]] == ["w1"]
    still_building(master, 0)
