"""Pausing, unpausing and shutting down workers: real master and worker processes, the CLI and the API."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from flowbot.errors import InvalidRequest, NotFound

from ..support import finished_builds, running_build, step_log, wait_for
from .test_access import call
from .test_events import close, connect, hello, read

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
pipeline = Pipeline(
    workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
    schedulers=[ForceScheduler("force", builders=["anywhere", "only-w1", "slow", "long"])],
    builders=[
        Builder("anywhere", collapse_requests=False, workers=["w1", "w2"], steps=[Shell("echo hi", name="hello")]),
        Builder("only-w1", collapse_requests=False, workers=["w1"], steps=[Shell("echo hi", name="hello")]),
        Builder("slow", workers=["w1"], steps=[Shell("sleep 2; echo slept", name="sleep")]),
        Builder("long", workers=["w1", "w2"], steps=[
            Shell('if [ "$FLOWBOT_WORKER" = w1 ]; then sleep 60; fi; echo done on $FLOWBOT_WORKER', name="wait"),
        ]),
    ],
)
"""


def flowbot(*args: str, master) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowbot", *args, "--master", master.url], capture_output=True, text=True, timeout=60
    )


def workers(master) -> dict[str, dict]:
    return {w["name"]: w for w in master.client.workers()}


def connected(master, name: str) -> bool:
    return workers(master)[name]["connected"]


def test_a_paused_worker_gets_no_new_builds_until_unpaused_even_across_a_master_restart(master_factory, worker_factory):
    # Given a master with two workers
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s")
    worker_factory(master, "w2", "s")

    # When w1 is paused from the command line
    paused = flowbot("worker", "pause", "w1", "--reason", "disk full", master=master)
    assert paused.returncode == 0, paused.stderr
    assert "paused w1" in paused.stdout
    listed = workers(master)
    assert (listed["w1"]["paused"], listed["w1"]["paused_reason"]) == (True, "disk full")
    assert listed["w2"]["paused"] is False
    assert "connected, paused" in flowbot("status", master=master).stdout

    # Then a build either worker may run goes to w2, and one only w1 may run waits
    master.client.force("anywhere")
    master.client.force("only-w1")
    (build,) = finished_builds(master.client, 1)
    assert (build["builder"], build["worker"], build["result"]) == ("anywhere", "w2", "SUCCESS")
    time.sleep(1.0)
    assert [r["builder"] for r in master.client.buildrequests()] == ["only-w1"]
    assert master.client.builds(builder="only-w1") == []

    # When the master restarts, and w1 reconnects to it
    master.stop()
    master = master_factory(PIPELINE, http_port=master.http_port, zmq_port=master.zmq_port)
    wait_for(lambda: connected(master, "w1"), 30, "w1 to reconnect")

    # Then w1 is still paused, and the request still waits
    assert workers(master)["w1"]["paused"] is True
    time.sleep(1.0)
    assert master.client.builds(builder="only-w1") == []

    # When it is unpaused, the waiting build runs on it at once
    unpaused = flowbot("worker", "unpause", "w1", master=master)
    assert unpaused.returncode == 0, unpaused.stderr
    (build,) = finished_builds(master.client, 1, timeout=10, builder="only-w1")
    assert (build["worker"], build["result"]) == ("w1", "SUCCESS")
    assert workers(master)["w1"]["paused"] is False


def test_a_graceful_shutdown_lets_the_running_build_finish_then_the_worker_exits_for_good(
    master_factory, worker_factory
):
    # Given a worker running a build that takes a while
    master = master_factory(PIPELINE)
    w1 = worker_factory(master, "w1", "s")
    master.client.force("slow")
    running_build(master.client, "slow")

    # When it is shut down gracefully, and another build is forced meanwhile
    state = master.client.shutdown_worker("w1")
    assert state["shutting_down"] is True and workers(master)["w1"]["shutting_down"] is True
    master.client.force("only-w1")

    # Then the running build finishes as if nothing happened
    assert w1.alive()
    (build,) = finished_builds(master.client, 1, builder="slow")
    assert build["result"] == "SUCCESS"
    assert "slept" in step_log(master.client, build["id"], 0)

    # And then the worker process exits with 0 and does not come back
    assert w1.proc.wait(timeout=15) == 0
    wait_for(lambda: not connected(master, "w1"), 10, "w1 to be gone")
    assert "shut down (graceful)" in w1.log() and "reconnecting" not in w1.log()
    # The build forced meanwhile was never given to it: it waits for a worker
    time.sleep(0.5)
    assert master.client.builds(builder="only-w1") == []
    assert [r["builder"] for r in master.client.buildrequests()] == ["only-w1"]
    assert workers(master)["w1"]["shutting_down"] is False


def test_an_immediate_shutdown_retries_the_running_build_on_another_worker(master_factory, worker_factory):
    # Given a long build running on w1, and w2 connected too
    master = master_factory(PIPELINE)
    w1 = worker_factory(master, "w1", "s")
    master.client.force("long")
    first = running_build(master.client, "long")
    assert first["worker"] == "w1"
    worker_factory(master, "w2", "s")

    # When w1 is shut down now, from the command line
    shutdown = flowbot("worker", "shutdown", "w1", "--now", master=master)
    assert shutdown.returncode == 0, shutdown.stderr
    assert "shutting down w1 now" in shutdown.stdout

    # Then its build ends as RETRY, and runs again on w2
    builds = finished_builds(master.client, 2, builder="long")
    assert [(b["worker"], b["result"]) for b in builds] == [("w1", "RETRY"), ("w2", "SUCCESS")]
    assert "done on w2" in step_log(master.client, builds[1]["id"], 0)
    # And the worker process exits with 0 at once, without reconnecting
    assert w1.proc.wait(timeout=10) == 0
    assert "shut down (now)" in w1.log() and "reconnecting" not in w1.log()
    assert not connected(master, "w1")


async def test_controls_are_announced_live_and_bad_requests_are_refused(master_factory):
    # Given a master whose worker w1 is not connected, and a client following worker events
    master = master_factory(PIPELINE)
    ws = await connect(master, "types=worker.changed")
    await hello(ws)

    # When w1 is paused (before it ever connected) and unpaused
    assert master.client.pause_worker("w1", "new disk")["paused"] is True
    master.client.unpause_worker("w1")

    # Then each is an event with the worker's state
    paused, unpaused = await read(ws, 2)
    assert (paused["worker"], paused["paused"], paused["paused_reason"]) == ("w1", True, "new disk")
    assert (unpaused["paused"], unpaused["paused_reason"], unpaused["shutting_down"]) == (False, None, False)
    await close(ws)

    # And wrong requests get clear answers
    with pytest.raises(NotFound, match="no worker named 'w9'"):
        master.client.pause_worker("w9")
    with pytest.raises(InvalidRequest, match="worker 'w1' is not connected"):
        master.client.shutdown_worker("w1")
    for action, body, message in [
        ("shutdown", {"graceful": "yes"}, "graceful must be true or false"),
        ("pause", {"reason": 7}, "reason must be a string"),
        ("unpause", {"reason": "x"}, "unknown field(s) ['reason']"),
        ("pause", [], "the body must be a JSON object"),
    ]:
        status, answer, _ = call(master, "POST", f"/api/workers/w1/{action}", body)
        assert (status, answer["error"].split(";")[0]) == (400, message)
    assert call(master, "POST", "/api/workers/w1/restart", {})[0] == 404
