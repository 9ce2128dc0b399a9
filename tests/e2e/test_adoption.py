"""A master killed during a build and started again takes the build up when its worker comes back
in time: one run of each step, one log; a build whose worker does not come back is retried."""

from __future__ import annotations

from pathlib import Path

from flowbot.errors import NotFound

from ..support import finished_builds, restart, running_build, step_log, wait_for

#: Heartbeat of these masters: the resume window is 3 heartbeats, time for a worker to come back to
#: a master restarting on a busy machine.
HEARTBEAT = 2.0

#: A build whose steps note each run of theirs in ``runs`` (in the builder's directory on the worker):
#: a property, a long step that prints five lines, pauses, prints five more, and a step using the property.
PIPELINE = """
from flowbot import Pipeline, Worker, Builder, Shell, SetPropertyFromCommand, ForceScheduler, Interpolate
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["long"])],
    builders=[Builder("long", workers=["w1"], steps=[
        SetPropertyFromCommand("echo version >> ../runs; echo 1.2.3", property="version", name="version"),
        Shell("echo long >> ../runs; for i in 1 2 3 4 5; do echo line$i; done; sleep 5; "
              "for i in 6 7 8 9 10; do echo line$i; done", name="long"),
        Shell(Interpolate("echo after-%(prop:version)s >> ../runs"), name="after"),
    ])],
)
"""


def _runs(worker_dir: Path) -> list[str]:
    """Which steps ran on the worker, in order, once per run."""
    return (worker_dir / "long" / "runs").read_text().split()


def _half_way(master) -> dict:
    """Force a build and wait until its long step has printed its first five lines (and stored them)."""
    master.client.force("long")
    build = running_build(master.client, "long")

    def printed() -> bool:
        try:
            return "line5" in step_log(master.client, build["id"], 1)
        except NotFound:  # the step has not started yet
            return False

    wait_for(printed, 20, "the first five lines")
    return build


def test_a_master_killed_mid_step_takes_the_build_up_when_its_worker_comes_back(master_factory, worker_factory, db_url):
    # Given a build half way through its long step
    master = master_factory(PIPELINE, db=db_url, heartbeat=HEARTBEAT)
    worker = worker_factory(master, "w1", "s")
    build = _half_way(master)

    # When the master is killed, and started again while the worker runs the step
    master.kill()
    again = restart(master_factory, master, PIPELINE, heartbeat=HEARTBEAT)

    # Then the worker comes back to it, and the same build finishes, each step having run once
    (done,) = finished_builds(again.client, 1, timeout=60)
    assert (done["id"], done["result"]) == (build["id"], "SUCCESS")
    assert _runs(worker.basedir) == ["version", "long", "after-1.2.3"]
    detail = again.client.request("GET", f"/api/builds/{build['id']}")
    assert [(s["name"], s["result"]) for s in detail["steps"]] == [
        ("version", "SUCCESS"),
        ("long", "SUCCESS"),
        ("after", "SUCCESS"),
    ]
    # And the long step's log goes on where it was, every line once, in order
    lines = step_log(again.client, build["id"], 1).splitlines()
    assert [line for line in lines if line.startswith("line")] == [f"line{i}" for i in range(1, 11)]
    assert "taken up" in again.log()
    assert again.client.buildrequests(pending=True) == []


def test_a_build_whose_worker_does_not_come_back_after_a_master_restart_is_retried(
    master_factory, worker_factory, db_url
):
    # Given a build half way through its long step
    master = master_factory(PIPELINE, db=db_url, heartbeat=HEARTBEAT)
    worker = worker_factory(master, "w1", "s")
    build = _half_way(master)

    # When the master is killed and started again, but its worker is gone for good
    worker.kill()
    master.kill()
    again = restart(master_factory, master, PIPELINE, heartbeat=HEARTBEAT)

    # Then once the resume window has passed, the build ends as RETRY, saying why
    (retried,) = finished_builds(again.client, 1, timeout=60)
    assert (retried["id"], retried["result"]) == (build["id"], "RETRY")
    assert "did not come back" in again.client.request("GET", f"/api/builds/{build['id']}")["summary"]

    # And its request runs again on the next worker, in full
    worker_factory(again, "w1", "s")
    retried, rerun = finished_builds(again.client, 2, timeout=60)
    assert (rerun["request_id"], rerun["result"]) == (build["request_id"], "SUCCESS")
    assert again.client.buildrequests(pending=True) == []


def test_a_build_taken_up_does_not_repeat_the_lines_stored_unacknowledged_as_the_master_died(
    master_factory, worker_factory, proxy_to, db_url
):
    # Given a build in its long step, whose worker hears nothing from the master once the step has
    # begun, so the lines it prints are stored but their acknowledgements never reach it
    pipeline = PIPELINE.replace("echo long >> ../runs; ", "echo long >> ../runs; sleep 2; ")
    master = master_factory(pipeline, db=db_url, heartbeat=HEARTBEAT)
    proxy = proxy_to(master)
    worker = worker_factory(master, "w1", "s")
    master.client.force("long")
    wait_for(lambda: (worker.basedir / "long" / "runs").exists() and "long" in _runs(worker.basedir), 30, "the step")
    proxy.deafen_worker()
    build = running_build(master.client, "long")
    wait_for(lambda: "line5" in step_log(master.client, build["id"], 1), 20, "the first five lines to be stored")

    # When the master is killed then, and started again while the worker runs the step
    master.kill()
    again = restart(master_factory, master, pipeline, heartbeat=HEARTBEAT)

    # Then the build is taken up, and its log has every line once: the worker sends again what it
    # holds unacknowledged, and the master drops the lines it had stored
    (done,) = finished_builds(again.client, 1, timeout=60)
    assert (done["id"], done["result"]) == (build["id"], "SUCCESS")
    assert "taken up" in again.log()
    lines = step_log(again.client, build["id"], 1).splitlines()
    assert [line for line in lines if line.startswith("line")] == [f"line{i}" for i in range(1, 11)]
    assert _runs(worker.basedir) == ["version", "long", "after-1.2.3"]
