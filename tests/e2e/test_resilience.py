"""What happens when things go wrong: refused workers, killed workers, a killed master, garbage."""

from __future__ import annotations

import json
import sqlite3
import time

import zmq
from flowbot_worker import protocol

from ..support import finished_builds, running_build, wait_for

SLOW_PIPELINE = """
    from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler, ForceScheduler
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s1"), Worker("w2", secret="s2")],
        schedulers=[AnyBranchScheduler("changes", builders=["slow"]), ForceScheduler("force", builders=["slow"])],
        builders=[Builder("slow", workers=["w1", "w2"], collapse_requests=False,
                         steps=[Shell("sleep {seconds}; echo slept", name="sleep")])],
    )
"""


def test_a_worker_with_the_wrong_secret_is_refused_and_told_why(master_factory, worker_factory):
    master = master_factory()
    impostor = worker_factory(master, "w1", "not-the-secret", wait=False)
    wait_for(lambda: "refused worker 'w1': bad signature" in master.log(), 15, "the master to log the refusal")
    wait_for(lambda: "refused this worker" in impostor.log(), 15, "the worker to log the refusal")
    assert "secret" in impostor.log()
    assert not any(w["connected"] for w in master.client.workers())


def test_an_undeclared_worker_is_refused(master_factory, worker_factory):
    master = master_factory()
    stranger = worker_factory(master, "w9", "whatever", wait=False)
    wait_for(lambda: "refused worker 'w9': unknown worker" in master.log(), 15, "the refusal")
    wait_for(lambda: "unknown worker" in stranger.log(), 15, "the worker to hear why")
    assert not any(w["connected"] for w in master.client.workers())
    # Told the refusal will not change until the pipeline does, it stops, with a code of its own
    # (given --keep-trying it goes on, backing off: tests/e2e/test_processes.py)
    assert stranger.proc.wait(timeout=15) == 3


def test_a_worker_killed_mid_build_makes_it_retry_and_the_request_runs_again(master_factory, worker_factory):
    # Given a build running on w1, and w2 available too
    master = master_factory(SLOW_PIPELINE.format(seconds=1))
    w1 = worker_factory(master, "w1", "s1")
    (request_id,) = master.client.force("slow")
    first = running_build(master.client, "slow")
    assert first["worker"] == "w1"
    worker_factory(master, "w2", "s2")

    # When w1 dies without a word
    w1.kill()

    # Then its build ends as RETRY once the liveness window has passed, and the same request runs again on w2
    retried, rerun = finished_builds(master.client, 2, timeout=60)
    assert (retried["id"], retried["result"], retried["request_id"]) == (first["id"], "RETRY", request_id)
    assert (rerun["result"], rerun["worker"], rerun["request_id"]) == ("SUCCESS", "w2", request_id)
    assert rerun["number"] == retried["number"] + 1
    assert master.client.buildrequests(pending=True) == []
    assert "worker w1 lost" in master.log()
    workers = {w["name"]: w for w in master.client.workers()}
    assert not workers["w1"]["connected"]


def test_a_master_killed_and_restarted_finishes_every_accepted_request(master_factory, worker_factory):
    # Given a master with a queue: one build running, the rest waiting
    master = master_factory(SLOW_PIPELINE.format(seconds=0.3))
    worker_factory(master, "w1", "s1")
    accepted = [master.client.sendchange(branch="main", revision=f"rev{i}")["buildrequest_ids"][0] for i in range(6)]
    running = running_build(master.client, "slow")

    # When the master is killed with SIGKILL and started again on the same directory and ports
    master.kill()
    again = master_factory(
        SLOW_PIPELINE.format(seconds=0.3), wait=True, http_port=master.http_port, zmq_port=master.zmq_port
    )

    # Then the worker comes back by itself, the interrupted build is taken up again (or, had the master
    # died between two of its commands, retried), and every request succeeds
    wait_for(lambda: again.client.buildrequests(pending=True) == [], 60, "every request to complete")
    builds = again.client.builds(limit=100)
    by_id = {b["id"]: b for b in builds}
    assert by_id[running["id"]]["result"] in ("SUCCESS", "RETRY")
    succeeded = {b["request_id"] for b in builds if b["result"] == "SUCCESS"}
    assert succeeded == set(accepted)
    assert {b["revision"] for b in builds if b["result"] == "SUCCESS"} == {f"rev{i}" for i in range(6)}
    assert "were running when the master stopped" in again.log()


def test_a_master_stopped_cleanly_says_goodbye_and_its_workers_come_back_to_the_next(master_factory, worker_factory):
    # Given a master with a worker
    master = master_factory(SLOW_PIPELINE.format(seconds=0))
    w1 = worker_factory(master, "w1", "s1")

    # When the master is stopped as an operator does (SIGTERM) and started again on the same ports
    assert master.stop() == 0
    again = master_factory(SLOW_PIPELINE.format(seconds=0), http_port=master.http_port, zmq_port=master.zmq_port)

    # Then the worker heard why the master went, instead of waiting to find it silent, came back by
    # itself, and builds
    assert "master disconnected this worker: the master is shutting down" in w1.log()
    assert "connection lost" not in w1.log()
    wait_for(lambda: again.client.workers()[0]["connected"], 30, "the worker to come back")
    again.client.force("slow")
    assert finished_builds(again.client, 1)[0]["result"] == "SUCCESS"


def test_garbage_on_the_worker_socket_is_dropped_and_counted_without_harm(master_factory, worker_factory):
    master = master_factory()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(master.endpoint)
    try:
        # When someone sends everything but a valid message
        good = protocol.Channel(b"change-me")
        good.open()
        hello = good.pack(protocol.HELLO, {"name": "w1", "version": protocol.VERSION, "info": {}, "held": {}})
        garbage = [
            [b"x"],
            [b"FBP1", b"", b"{", b"}"],
            [b"NOPE", b"", b"{}", b"{}"],
            [b"FBP1", b"", b"[]", b"{}"],
            [b"FBP1", b"", json.dumps({"type": "boom", "session": "s", "seq": 1, "msg_id": "m"}).encode(), b"{}"],
            [b"FBP1", b"", b"{" + b" " * 10_000 + b"}", b"{}"],
            protocol.Channel(b"wrong-key").pack(protocol.HELLO, {"name": "w1", "version": 1, "info": {}, "held": {}}),
            good.pack(protocol.FINISHED, {"cmd_id": "x", "rc": 0}),  # from a route that never said hello
            [b"FBP1", b"\xff" * 64, b"\xff\xfe", b"\x00"],
        ]
        for frames in garbage:
            sock.send_multipart(frames)
        # ... and a signed hello (it knows w1's secret), then that hello again as a replay
        sock.send_multipart(hello)
        sock.send_multipart(hello)
        time.sleep(0.2)
    finally:
        sock.close()
        ctx.term()
    # The one valid hello got a challenge that nobody answered: it lapses after the liveness window
    wait_for(lambda: "never signed over its challenge" in master.log(), 10, "the unanswered hello to be dropped")
    assert "worker w1 connected" not in master.log()

    # Then the master is still fine: it serves the API and runs builds with real workers
    worker_factory(master, "w1", "change-me")
    worker_factory(master, "w2", "other")
    master.client.sendchange(branch="main", revision="after-garbage")
    results = sorted(b["result"] for b in finished_builds(master.client, 2))
    assert results == ["FAILURE", "SUCCESS"]
    log = master.log()
    for reason in ("bad-tag", "bad-json", "bad-type", "oversized", "unknown-route", "replay", "short"):
        assert reason in log, reason
    assert "Traceback" not in log


def test_a_worker_outlives_its_master_and_reconnects_when_it_returns(master_factory, worker_factory):
    master = master_factory()
    worker = worker_factory(master, "w1", "change-me")
    master.stop()
    assert worker.alive()
    again = master_factory(http_port=master.http_port, zmq_port=master.zmq_port)
    wait_for(
        lambda: any(w["name"] == "w1" and w["connected"] for w in again.client.workers()), 40, "the worker to reconnect"
    )
    again.client.force("unit")
    (build,) = finished_builds(again.client, 1)
    assert (build["result"], build["worker"]) == ("SUCCESS", "w1")


TRIGGER_PIPELINE = """
    from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Trigger, Triggerable
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s1"), Worker("w2", secret="s2")],
        schedulers=[ForceScheduler("force", builders=["parent"]), Triggerable("children", builders=["child"])],
        builders=[
            Builder("parent", workers=["w1"], steps=[Trigger("children", wait_for_finish=True)]),
            Builder("child", workers=["w2"], steps=[Shell({child!r}, name="test", junit="report.xml")]),
        ],
    )
"""
REPORT = "<testsuite><testcase classname='c' name='test_one'/></testsuite>"


def test_a_child_whose_test_results_cannot_be_stored_still_lets_its_parent_finish(master_factory, worker_factory):
    # Given a database that refuses test results (a full table, say), made so after the master set it up
    master = master_factory(TRIGGER_PIPELINE.format(child=f'echo "{REPORT}" > report.xml'))
    database = sqlite3.connect(master.basedir / "state.sqlite")
    database.execute(
        "CREATE TRIGGER refuse_tests BEFORE INSERT ON test_results BEGIN SELECT RAISE(ABORT, 'no room left'); END"
    )
    database.commit()
    database.close()
    worker_factory(master, "w1", "s1")
    worker_factory(master, "w2", "s2")

    # When a parent build triggers the child and waits for it
    master.client.force("parent")

    # Then both finish: the child's end is recorded, only its test results are lost, and said so
    builds = {b["builder"]: b for b in finished_builds(master.client, 2, timeout=30)}
    assert (builds["child"]["result"], builds["parent"]["result"]) == ("SUCCESS", "SUCCESS")
    assert master.client.buildrequests(pending=True) == []
    assert "build child #1: test results could not be stored" in master.log()
    assert "no room left" in master.log()
    assert "stays pending" not in master.log()


def test_builds_a_parent_triggered_end_as_retry_when_the_master_restarts(master_factory, worker_factory):
    # Given a parent waiting for the child build it triggered
    master = master_factory(TRIGGER_PIPELINE.format(child="sleep 60"))
    worker_factory(master, "w1", "s1")
    worker_factory(master, "w2", "s2")
    master.client.force("parent")
    parent = running_build(master.client, "parent")
    child = running_build(master.client, "child")

    # When the master is stopped and started again
    master.stop()
    again = master_factory(TRIGGER_PIPELINE.format(child="true"), http_port=master.http_port, zmq_port=master.zmq_port)

    # Then the child ended as RETRY, as its parent did, not as if someone had cancelled it
    by_id = {b["id"]: b for b in again.client.builds(limit=50)}
    assert by_id[parent["id"]]["result"] == "RETRY"
    assert by_id[child["id"]]["result"] == "RETRY"
