"""Approval gates end to end: a real master and worker, decisions through the API and the CLI,
the worker free while a build waits, roles that say who may decide."""

from __future__ import annotations

import subprocess
import sys

from ..support import finished_builds, step_log, wait_for
from .test_access import basic, call

PIPELINE = """\
from flowbot import (Pipeline, Worker, Builder, Shell, ForceScheduler, Approval, StringParameter,
                     IntParameter, Interpolate, Auth, Role, WorkerLock)
disk = WorkerLock("disk")
pipeline = Pipeline(
    workers=[Worker("w1", secret="s", max_builds=1)],
    schedulers=[ForceScheduler("force", builders=["release", "unit", "gate"])],
    builders=[
        Builder("release", workers=["w1"], locks=[disk.access("exclusive")], steps=[
            Shell("echo built 2.4", name="build"),
            Approval("ship it", prompt=Interpolate("Ship %(prop:buildername)s?"), fields=[
                StringParameter("channel", required=True), IntParameter("percent", default=10, maximum=100),
            ]),
            Shell(Interpolate("echo shipping to %(prop:channel)s at %(prop:percent)s%% on $FLOWBOT_WORKER"),
                  name="ship"),
            Shell("echo cleaned up", name="cleanup", always_run=True),
        ]),
        Builder("unit", workers=["w1"], locks=[disk.access("exclusive")], steps=[Shell("echo unit ran")]),
        Builder("gate", workers=["w1"], steps=[Approval("wait", timeout=2), Shell("echo after")]),
    ],
    auth=Auth(
        users={"alice": "a-pass", "bob": "b-pass"},
        tokens={"alice-cli": "tok-a"},
        roles=[
            Role("everyone", users=["alice", "bob"], may=["force"]),
            Role("release managers", users=["alice", "alice-cli"], may=["approve"], builders=["release"]),
        ],
    ),
)
"""

ALICE, BOB = basic("alice", "a-pass"), basic("bob", "b-pass")


def waiting_build(master, builder: str) -> dict:
    """The build of ``builder`` that waits for approval, once it does."""

    def found() -> dict | None:
        builds = [b for b in master.client.builds(builder=builder, limit=5) if b["result"] is None]
        detail = master.client.request("GET", f"/api/builds/{builds[0]['id']}") if builds else None
        return detail if detail and detail["approval"] else None

    return wait_for(found, 60, f"a build of {builder} waiting for approval")


def flowbot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowbot", *args], capture_output=True, text=True, timeout=120)


def test_a_build_waits_for_approval_without_its_worker_and_goes_on_with_the_form_values(master_factory, worker_factory):
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s")

    # Given a release build waiting for approval
    assert call(master, "POST", "/api/builders/release/force", {}, ALICE)[0] == 201
    build = waiting_build(master, "release")
    assert build["approval"]["name"] == "ship it"
    assert build["approval"]["prompt"] == "Ship release?"
    assert [f["name"] for f in build["approval"]["fields"]] == ["channel", "percent"]
    assert master.client.request("GET", "/api/approvals")["approvals"][0]["build_id"] == build["id"]

    # When another build needs the only worker slot and the builder's lock, it runs meanwhile
    assert call(master, "POST", "/api/builders/unit/force", {}, BOB)[0] == 201
    (unit,) = finished_builds(master.client, 1, timeout=60, builder="unit")
    assert unit["result"] == "SUCCESS"
    assert master.client.request("GET", f"/api/builds/{build['id']}")["result"] is None  # still waiting

    # Then bob, whom no role lets approve release builds, is refused; a bad form value is too
    status, answer, _ = call(master, "POST", f"/api/builds/{build['id']}/approve", {"properties": {}}, BOB)
    assert status == 403 and answer["error"].startswith("bob may not approve")
    status, answer, _ = call(
        master, "POST", f"/api/builds/{build['id']}/approve", {"properties": {"percent": 5}}, ALICE
    )
    assert status == 400 and answer["error"] == "channel is required"

    # And alice approves with the form: the build takes a worker again and goes on with its values
    status, answer, _ = call(
        master,
        "POST",
        f"/api/builds/{build['id']}/approve",
        {"comment": "go", "properties": {"channel": "stable", "percent": "50"}},
        ALICE,
    )
    assert status == 200 and answer == {
        "build": build["id"],
        "approved": True,
        "by": "alice",
        "properties": {"channel": "stable", "percent": 50},
    }
    (done,) = finished_builds(master.client, 1, timeout=60, builder="release")
    detail = master.client.request("GET", f"/api/builds/{build['id']}")
    assert done["result"] == "SUCCESS" and detail["approval"] is None
    assert [s["result"] for s in detail["steps"]] == ["SUCCESS"] * 4
    assert detail["steps"][1]["summary"] == "approved by alice: go"
    assert "shipping to stable at 50% on w1" in step_log(master.client, build["id"], 2)
    assert detail["properties"]["channel"] == ["stable", "Approval Form"]
    assert "waiting for a decision; worker w1 and the builder's locks are free" in step_log(
        master.client, build["id"], 1
    )
    assert "running on worker w1" in step_log(master.client, build["id"], 2)
    # Deciding twice is refused
    status, answer, _ = call(master, "POST", f"/api/builds/{build['id']}/approve", {}, ALICE)
    assert status == 404 and answer["error"] == f"build {build['id']} is not waiting for approval"


def test_a_rejected_build_fails_and_runs_only_its_cleanup_and_one_without_a_decision_times_out(
    master_factory, worker_factory
):
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s")

    # Given a release build waiting, rejected from the command line
    assert call(master, "POST", "/api/builders/release/force", {}, ALICE)[0] == 201
    build = waiting_build(master, "release")
    cli = flowbot(
        "reject", f"release/{build['number']}", "--comment", "not today", "--master", master.url, "--token", "tok-a"
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == f"rejected build release/{build['number']} as alice-cli"

    # Then it fails, skips what follows but its cleanup, and says who rejected it and why
    (done,) = finished_builds(master.client, 1, timeout=60, builder="release")
    detail = master.client.request("GET", f"/api/builds/{build['id']}")
    assert done["result"] == "FAILURE"
    assert [(s["name"], s["result"]) for s in detail["steps"]] == [
        ("build", "SUCCESS"),
        ("ship it", "FAILURE"),
        ("cleanup", "SUCCESS"),
    ]
    assert detail["steps"][1]["summary"] == "rejected by alice-cli: not today"

    # And a build nobody decides about fails once its approval's timeout is up
    assert call(master, "POST", "/api/builders/gate/force", {}, ALICE)[0] == 201
    (gate,) = finished_builds(master.client, 1, timeout=60, builder="gate")
    detail = master.client.request("GET", f"/api/builds/{gate['id']}")
    assert gate["result"] == "FAILURE"
    assert [(s["name"], s["result"]) for s in detail["steps"]] == [("wait", "FAILURE")]
    assert detail["steps"][0]["summary"] == "no decision within 2 s"
