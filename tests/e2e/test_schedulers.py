"""Schedulers with a real master: tree-stable timers that survive a restart, periodic runs,
dependent builders, typed force parameters, and a reconfig that swaps schedulers' builders."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from flowbot.errors import InvalidRequest

from ..support import finished_builds, wait_for

STABLE = """
    from flowbot import Pipeline, Worker, Builder, Shell, SingleBranchScheduler, ChangeFilter
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[SingleBranchScheduler(
            "main", change_filter=ChangeFilter(branch="main"), tree_stable_timer={timer}, builders=["test"],
            file_is_important=lambda change: not all(f.endswith(".md") for f in change.files),
        )],
        builders=[Builder("test", workers=["w1"], steps=[Shell("echo building $FLOWBOT_REVISION")])],
    )
"""


def test_a_tree_stable_timer_builds_once_after_the_last_important_change(master_factory, worker_factory):
    master = master_factory(STABLE.format(timer=1.0))
    worker_factory(master, "w1", "s")
    # Given a burst of changes on main: two that matter, one docs-only, one on another branch
    client = master.client
    assert client.sendchange(branch="main", revision="a1", files=["src/a.py"])["buildrequest_ids"] == []
    assert client.sendchange(branch="main", revision="a2", files=["README.md"])["buildrequest_ids"] == []
    client.sendchange(branch="main", revision="a3", files=["src/b.py"])
    client.sendchange(branch="other", revision="x1", files=["src/c.py"])
    time.sleep(0.5)
    assert client.builds() == []  # the tree is not stable yet

    # Then one build comes after the timer, of the newest change, with every change that waited
    (build,) = finished_builds(client, 1, timeout=10)
    assert (build["branch"], build["revision"], build["result"]) == ("main", "a3", "SUCCESS")
    time.sleep(1.2)
    assert len(client.builds()) == 1


def test_held_changes_survive_a_restart_and_still_build(master_factory, worker_factory):
    master = master_factory(STABLE.format(timer=2.0))
    master.client.sendchange(branch="main", revision="held", files=["src/a.py"])
    # When the master dies before the timer fires
    master.kill()
    again = master_factory(STABLE.format(timer=2.0), http_port=master.http_port, zmq_port=master.zmq_port)
    worker_factory(again, "w1", "s")
    # Then the new master re-arms the timer from the store and builds the change
    (build,) = finished_builds(again.client, 1, timeout=15)
    assert (build["revision"], build["result"]) == ("held", "SUCCESS")


def test_periodic_and_dependent_schedulers(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, Periodic, Dependent
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[
                Periodic("every-second", builders=["nightly-ish"], period=1, branch="main"),
                Dependent("after", upstream="nightly-ish", builders=["publish"]),
            ],
            builders=[
                Builder("nightly-ish", workers=["w1"], steps=[Shell("echo tick")]),
                Builder("publish", workers=["w1"], steps=[Shell("echo publish $FLOWBOT_BRANCH")]),
            ],
        )
    """)
    worker_factory(master, "w1", "s")
    builds = finished_builds(master.client, 4, timeout=15)
    by_builder = {b["builder"] for b in builds}
    assert by_builder == {"nightly-ish", "publish"}
    publish = next(b for b in builds if b["builder"] == "publish")
    assert publish["branch"] == "main"
    assert "publish main" in master.client.request("GET", f"/api/builds/{publish['id']}/steps/0/log")


FORCE = """
    from flowbot import (Pipeline, Worker, Builder, Shell, ForceScheduler, Interpolate, StringParameter,
                         IntParameter, BoolParameter, ChoiceParameter)
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["release"], params=[
            StringParameter("version", required=True, max_length=20),
            IntParameter("jobs", default=2, minimum=1, maximum=64),
            BoolParameter("dry_run", default=True),
            ChoiceParameter("channel", choices=["beta", "stable"]),
        ])],
        builders=[Builder("release", workers=["w1"], steps=[
            Shell(Interpolate("echo v=%(prop:version)s j=%(prop:jobs)s dry=%(prop:dry_run)s c=%(prop:channel)s"))
        ])],
    )
"""


def test_force_parameters_are_offered_checked_and_become_properties(master_factory, worker_factory):
    master = master_factory(FORCE)
    worker_factory(master, "w1", "s")
    client = master.client
    (builder,) = client.builders()
    params = {p["name"]: p for p in builder["force"]["fields"]}
    assert list(params)[:3] == ["reason", "branch", "revision"]
    assert params["jobs"] == {
        "name": "jobs",
        "type": "int",
        "label": "jobs",
        "default": 2,
        "required": False,
        "minimum": 1,
        "maximum": 64,
    }
    assert params["channel"]["choices"] == ["beta", "stable"]

    for bad, message in [
        ({}, "version is required"),
        ({"version": "1.0", "jobs": "many"}, "jobs must be a whole number"),
        ({"version": "1.0", "jobs": 100}, "jobs must be at most 64"),
        ({"version": "1.0", "channel": "nightly"}, "channel must be one of"),
        ({"version": "1.0", "colour": "red"}, "unknown parameter"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            client.force("release", properties=bad)

    client.force("release", properties={"version": "2.0", "jobs": "8", "dry_run": "no"})
    (build,) = finished_builds(client, 1)
    log = client.request("GET", f"/api/builds/{build['id']}/steps/0/log")
    assert "v=2.0 j=8 dry=False c=beta" in log

    # The CLI passes parameters too
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowbot",
            "force",
            "--master",
            master.url,
            "release",
            "--property",
            "version=3.0",
            "--property",
            "channel=stable",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    builds = finished_builds(client, 2)
    assert "v=3.0 j=2 dry=True c=stable" in client.request("GET", f"/api/builds/{builds[1]['id']}/steps/0/log")


SWAP = """
    from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler, ForceScheduler
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[
            AnyBranchScheduler("docs-changes", builders=["{docs}"], change_filter=lambda c: c.branch == "docs"),
            AnyBranchScheduler("code-changes", builders=["{code}"], change_filter=lambda c: c.branch == "code"),
            ForceScheduler("force", builders=["slow"]),
        ],
        builders=[
            Builder("docs", workers=["w1"], steps=[Shell("echo docs")]),
            Builder("code", workers=["w1"], steps=[Shell("echo code")]),
            Builder("slow", workers=["w1"], steps=[Shell("sleep 1.5; echo {slow}")]),
            {extra}
        ],
    )
"""


def test_a_reconfig_swaps_schedulers_builders_without_dropping_a_running_build(master_factory, worker_factory):
    # Buildbot: test_integration_scheduler_reconfigure.py
    master = master_factory(SWAP.format(docs="docs", code="code", slow="before", extra=""))
    worker_factory(master, "w1", "s")
    client = master.client
    client.sendchange(branch="docs", revision="d1")
    (first,) = finished_builds(client, 1)
    assert first["builder"] == "docs"
    client.force("slow")
    wait_for(lambda: any(b["builder"] == "slow" and b["result"] is None for b in client.builds()), 10, "slow")

    # When the pipeline is edited (schedulers swapped, a builder added) and reconfig is asked for
    edited = SWAP.format(
        docs="code", code="docs", slow="after", extra='Builder("new", workers=["w1"], steps=[Shell("echo new")]),'
    )
    (master.basedir / "pipeline.py").write_text(textwrap.dedent(edited))
    result = subprocess.run(
        [sys.executable, "-m", "flowbot", "reconfig", str(master.basedir)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "reconfigured: builders added ['new']" in master.log(), 10, "the reconfig")

    # Then the running build finishes as it began, and changes go where the new pipeline says
    client.sendchange(branch="docs", revision="d2")
    builds = finished_builds(client, 3)
    slow = next(b for b in builds if b["builder"] == "slow")
    assert "before" in client.request("GET", f"/api/builds/{slow['id']}/steps/0/log")
    assert next(b for b in builds if b["revision"] == "d2")["builder"] == "code"
    assert "new" in {b["name"] for b in client.builders()}


def test_a_broken_reconfig_keeps_the_running_pipeline(master_factory):
    master = master_factory(SWAP.format(docs="docs", code="code", slow="x", extra=""))
    (master.basedir / "pipeline.py").write_text("from flowbot import Pipeline\npipeline = Pipeline(\n")
    result = subprocess.run(
        [sys.executable, "-m", "flowbot", "reconfig", str(master.basedir)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "pipeline.py" in result.stderr and "syntax error" in result.stderr
    with pytest.raises(InvalidRequest, match="syntax error"):
        master.client.request("POST", "/api/reconfig")
    assert {b["name"] for b in master.client.builders()} == {"docs", "code", "slow"}


REMOVE = """
    from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Periodic

    class Broken(Periodic):
        def next_run(self, after):
            raise ZeroDivisionError("the schedule's arithmetic is wrong")

    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders={forced}), {extra}],
        builders=[
            Builder("keep", workers=["w1"], steps=[Shell("echo kept")]),
            {builders}
        ],
    )
"""


def reconfig_command(master) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowbot", "reconfig", str(master.basedir)], capture_output=True, text=True, timeout=60
    )


def test_a_reconfig_lets_a_removed_builder_finish_and_an_added_one_build(master_factory, worker_factory):
    # Given a master running a build of builder "going"
    going = 'Builder("going", workers=["w1"], steps=[Shell("echo started; sleep 2; echo finished")]),'
    master = master_factory(REMOVE.format(forced=["keep", "going"], extra="", builders=going))
    worker_factory(master, "w1", "s")
    client = master.client
    client.force("going")
    wait_for(lambda: any(b["result"] is None for b in client.builds()), 10, "the build of 'going' to start")

    # When the pipeline loses "going" and gains "added", and flowbot reconfig applies it
    added = 'Builder("added", workers=["w1"], steps=[Shell("echo added")]),'
    (master.basedir / "pipeline.py").write_text(
        textwrap.dedent(REMOVE.format(forced=["keep", "added"], extra="", builders=added))
    )
    result = reconfig_command(master)

    # Then the command says the master runs it, the running build finishes as it began, and the
    # new builder builds
    assert result.returncode == 0 and "runs it now" in result.stdout, result.stderr
    (finished,) = finished_builds(client, 1)
    assert (finished["builder"], finished["result"]) == ("going", "SUCCESS")
    assert "finished" in client.request("GET", f"/api/builds/{finished['id']}/steps/0/log")
    client.force("added")
    assert finished_builds(client, 2)[-1]["builder"] == "added"
    assert {b["name"] for b in client.builders()} == {"keep", "added"}


def test_a_pipeline_the_master_cannot_apply_makes_flowbot_reconfig_fail_and_changes_nothing(master_factory):
    # Given a master, and an edit that checks out but breaks when the master arms its scheduler
    master = master_factory(REMOVE.format(forced=["keep"], extra="", builders=""))
    broken = REMOVE.format(forced=["keep"], extra='Broken("every", builders=["keep"], period=60)', builders="")
    (master.basedir / "pipeline.py").write_text(textwrap.dedent(broken))

    # When flowbot reconfig asks the master to apply it
    result = reconfig_command(master)

    # Then the command fails with the master's reason, and the master runs what it had
    assert result.returncode == 1, result.stdout
    assert "refused, still running the previous pipeline" in result.stderr
    assert "arithmetic is wrong" in result.stderr
    assert "reconfig refused" in master.log()
    assert len(master.client.force("keep")) == 1
