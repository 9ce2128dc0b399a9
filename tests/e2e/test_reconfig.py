"""A reconfig applies the whole edited pipeline: who may act, who is told of builds, what is kept."""

from __future__ import annotations

import re
import textwrap

from ..support import finished_builds, wait_for
from .test_access import basic, call

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Auth, HttpStatusPush, Retention
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["quick"])],
    builders=[Builder("quick", collapse_requests=False, workers=["w1"], steps=[Shell("echo hi", name="hello")])],
    auth={auth},
    reporters=[{reporters}],
    retention={retention},
)
"""
AUTH = 'Auth(users={"alice": "wonderland"}, tokens={"ci": "tok"})'
TOKEN = {"Authorization": "Bearer tok"}


def pipeline(auth: str = "None", reporters: str = "", retention: str = "None") -> str:
    return PIPELINE.format(auth=auth, reporters=reporters, retention=retention)


def reconfig(master, text: str, headers: dict[str, str] | None = None) -> None:
    (master.basedir / "pipeline.py").write_text(textwrap.dedent(text))
    status, body, _ = call(master, "POST", "/api/reconfig", {}, headers)
    assert status == 200, body


def test_auth_added_or_removed_by_a_reconfig_applies_at_once(master_factory):
    # Given an open master
    master = master_factory(pipeline())
    assert call(master, "POST", "/api/builders/quick/force", {})[0] == 201

    # When a reconfig adds users and a token
    reconfig(master, pipeline(auth=AUTH))

    # Then they log in and act, and nobody else does
    status, body, headers = call(master, "POST", "/api/login", {"user": "alice", "password": "wonderland"})
    assert (status, body["user"]) == (200, "alice")
    session = {"Cookie": headers["Set-Cookie"].split(";")[0], "X-Flowbot-CSRF": body["csrf"]}
    assert call(master, "GET", "/api/whoami", headers=session)[1]["user"] == "alice"
    assert call(master, "POST", "/api/builders/quick/force", {}, session)[0] == 201
    assert call(master, "POST", "/api/builders/quick/force", {}, basic("alice", "wonderland"))[0] == 201
    assert call(master, "POST", "/api/builders/quick/force", {}, TOKEN)[0] == 201
    assert call(master, "POST", "/api/builders/quick/force", {})[0] == 401
    assert call(master, "POST", "/api/builders/quick/force", {}, {"Authorization": "Bearer nope"})[0] == 403

    # And when a reconfig takes the auth away again, the master is open again
    reconfig(master, pipeline(), TOKEN)
    assert call(master, "POST", "/api/builders/quick/force", {})[0] == 201


def test_reporters_added_by_a_reconfig_report_and_removed_ones_stop(master_factory, worker_factory, http_recorder):
    # Given a master reporting to one endpoint
    old, new = http_recorder(), http_recorder()
    master = master_factory(pipeline(reporters=f"HttpStatusPush({old.url!r})"))
    worker_factory(master, "w1", "s")
    master.client.force("quick")
    finished_builds(master.client, 1)
    wait_for(lambda: len(old.requests) == 2, 20, "the first build's start and end at the old endpoint")

    # When a reconfig swaps that endpoint for another
    reconfig(master, pipeline(reporters=f"HttpStatusPush({new.url!r})"))
    master.client.force("quick")
    second = finished_builds(master.client, 2)[-1]

    # Then the next build is reported to the new endpoint only
    reports = wait_for(lambda: len(new.requests) == 2 and new.requests, 20, "the second build at the new endpoint")
    assert {r["json"]["build"]["id"] for r in reports} == {second["id"]}
    assert len(old.requests) == 2


def test_a_reconfig_changes_how_long_builds_are_kept(master_factory, worker_factory):
    # Given a master that keeps builds for a year, and a finished build
    master = master_factory(pipeline(retention='Retention(builds="365d")'))
    worker_factory(master, "w1", "s")
    master.client.force("quick")
    finished_builds(master.client, 1)

    # When a reconfig keeps them for a second only
    reconfig(master, pipeline(retention="Retention(builds=1, every=1)"))

    # Then the build goes, and the master's log says the janitor took it
    wait_for(lambda: master.client.builds() == [], 30, "the janitor to remove the build")
    assert master.client.builds() == [] and master.client.builders()
    assert re.search(r"janitor: removed \d+ log chunks and 1 build requests with their builds", master.log())
