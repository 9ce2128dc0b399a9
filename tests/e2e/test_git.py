"""Git end to end: a real master polls a real repository, real workers check it out and build it.

Covers the ``GitPoller`` across a crash of the master, the ``Git`` step with the worker's git
binary and with dulwich (git hidden from the worker's PATH), and the README's pipeline that follows
a repository, as a user would write it, against a repository with a Makefile.
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from ..gitrepos import GitRepo
from ..support import finished_builds, step_log, wait_for

#: A tiny Python project whose tests pass.
PROJECT = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "test_calc.py": textwrap.dedent(
        """\
        import unittest

        from calc import add


        class AddTest(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(2, 3), 5)
        """
    ),
}

BUILD_PIPELINE = """\
from flowbot import AnyBranchScheduler, Builder, ForceScheduler, Git, GitPoller, Pipeline, Shell, Worker

REPO = {repo!r}
pipeline = Pipeline(
    workers=[Worker("w1", secret="s1")],
    sources=[GitPoller(REPO, branches=["main"], poll_interval=0.3)],
    schedulers=[
        AnyBranchScheduler("on-change", builders=["unit"]),
        ForceScheduler("force", builders=["unit"]),
    ],
    builders=[
        Builder("unit", workers=["w1"], collapse_requests=False, steps=[
            Git(REPO, mode="full"),
            Shell([{python!r}, "-m", "unittest", "-v"], name="test"),
        ]),
    ],
)
"""


def polled(master, times: int = 1) -> None:
    """Wait until the master's poller has made its first poll (``times`` masters over)."""
    wait_for(lambda: master.log().count("first poll of") >= times, 30, "the poller's first poll")


@pytest.mark.parametrize("tool", ["git", "dulwich"])
def test_each_new_commit_is_checked_out_and_built(tmp_path, master_factory, worker_factory, tool):
    # Given a repository, polled by a master whose worker has git on its PATH, or not
    repo = GitRepo(tmp_path / "project")
    repo.commit("A calculator with tests", PROJECT)
    master = master_factory(BUILD_PIPELINE.format(repo=repo.url, python=sys.executable))
    worker_factory(master, "w1", "s1", env={"PATH": "/nonexistent-bin"} if tool == "dulwich" else None)
    polled(master)
    assert master.client.builds() == []  # the history already there is not built

    # When a good commit lands, then one that breaks the tests
    good = repo.commit("Add more", {"more.py": "X = 1\n"})
    first = finished_builds(master.client, 1)[0]
    bad = repo.commit("Break add", {"calc.py": "def add(a, b):\n    return a - b\n"})
    builds = finished_builds(master.client, 2)

    # Then each was built at its own revision, with the result its tests give
    assert [(b["revision"], b["result"]) for b in builds] == [(good, "SUCCESS"), (bad, "FAILURE")]
    details = master.client.request("GET", f"/api/builds/{first['id']}")
    assert details["properties"]["got_revision"] == [good, "Git Step"]
    assert [(s["name"], s["result"]) for s in details["steps"]] == [("git", "SUCCESS"), ("test", "SUCCESS")]
    log = step_log(master.client, first["id"], 0)
    assert f"checking out {good} of {repo.url}" in log
    assert ("with git (" if tool == "git" else "with dulwich (no git binary") in log
    assert f"got revision {good}" in log
    assert "FAILED (failures=1)" in step_log(master.client, builds[1]["id"], 1)

    # And a forced build, which names no revision, gets the head of the branch
    master.client.force("unit")
    forced = finished_builds(master.client, 3)[-1]
    assert forced["result"] == "FAILURE"
    assert master.client.request("GET", f"/api/builds/{forced['id']}")["properties"]["got_revision"][0] == bad


def test_a_checkout_that_cannot_happen_fails_with_a_clear_message(tmp_path, master_factory, worker_factory):
    repo = GitRepo(tmp_path / "project")
    repo.commit("First", PROJECT)
    master = master_factory(BUILD_PIPELINE.format(repo=repo.url, python=sys.executable))
    worker_factory(master, "w1", "s1")
    polled(master)

    # A revision that the repository does not have (a change sent by hand, say)
    master.client.sendchange(branch="main", revision="0" * 39 + "1")
    (build,) = finished_builds(master.client, 1)
    assert build["result"] == "FAILURE"
    details = master.client.request("GET", f"/api/builds/{build['id']}")
    assert [(s["name"], s["result"]) for s in details["steps"]] == [("git", "FAILURE")]  # halts the build
    assert f"revision {'0' * 39}1 is not in {repo.url}" in step_log(master.client, build["id"], 0)
    assert "got_revision" not in details["properties"]


def test_a_master_killed_and_restarted_neither_misses_nor_repeats_a_commit(tmp_path, master_factory):
    # Given a master that has polled a repository and seen one commit
    repo = GitRepo(tmp_path / "project")
    repo.commit("Start", PROJECT)
    pipeline = BUILD_PIPELINE.format(repo=repo.url, python=sys.executable)
    master = master_factory(pipeline)
    polled(master)
    seen = repo.commit("Seen before the crash")

    def revisions(m) -> list[str]:
        return [r["revision"] for r in reversed(m.client.request("GET", "/api/buildrequests")["buildrequests"])]

    wait_for(lambda: revisions(master) == [seen], 20, "the first change")

    # When the master is killed, two commits land, and a master starts again on its directory
    master.kill()
    missed = [repo.commit("While down, 1"), repo.commit("While down, 2")]
    again = master_factory(pipeline, http_port=master.http_port, zmq_port=master.zmq_port)

    # Then it reports exactly the commits it had not reported, once each, even after more polls
    wait_for(lambda: len(revisions(again)) >= 3, 20, "the missed changes")
    time.sleep(1.5)  # several more polls
    assert revisions(again) == [seen, *missed]
    assert again.log().count("first poll of") == 1  # the restarted poller did not start afresh


#: The README's pipeline that tests each commit of a repository and packages what passed. Each
#: builder has its own directory on a worker, so "package" checks the source out too.
FOLLOWING_PIPELINE = """\
from flowbot import (Pipeline, Worker, Builder, GitPoller, SingleBranchScheduler, ChangeFilter,
                     Triggerable, Git, Shell, SetPropertyFromCommand, Interpolate, Trigger, MasterLock)

REPO = {repo!r}
deploy = MasterLock("deploy", max_count=1)
pipeline = Pipeline(
    workers=[Worker("w1", secret="a"), Worker("w2", secret="b")],
    sources=[GitPoller(REPO, branches=["main"], poll_interval=1)],
    schedulers=[
        SingleBranchScheduler("main", change_filter=ChangeFilter(branch="main"),
                              tree_stable_timer=None, builders=["test"]),
        Triggerable("after-test", builders=["package"]),
    ],
    builders=[
        Builder("test", workers=["w1", "w2"], steps=[
            Git(REPO, mode="full"),
            SetPropertyFromCommand(command="cat VERSION", property="version"),
            Shell(Interpolate("make test VERSION=%(prop:version)s"), name="test", halt_on_failure=True),
            Trigger(schedulers=["after-test"], wait_for_finish=True),
        ]),
        Builder("package", workers=["w1", "w2"], locks=[deploy.access("exclusive")],
                steps=[Git(REPO, mode="full"), Shell("make dist", name="dist")]),
    ],
)
"""

MAKEFILE = """\
VERSION ?= unknown

test:
\t@echo "testing version $(VERSION)"
\t@test -f src/app.txt

dist:
\t@mkdir -p dist && tar czf dist/app-$$(cat VERSION).tar.gz src && echo "built dist/app-$$(cat VERSION).tar.gz"
"""


def test_a_pipeline_that_follows_a_repository_tests_and_packages_each_commit(tmp_path, master_factory, worker_factory):
    # Given a project with a Makefile, and the README's pipeline pointed at it
    repo = GitRepo(tmp_path / "project")
    repo.commit("Project", {"Makefile": MAKEFILE, "VERSION": "1.4.0\n", "src/app.txt": "app\n"})
    master = master_factory(FOLLOWING_PIPELINE.format(repo=repo.url))
    worker_factory(master, "w1", "a")
    worker_factory(master, "w2", "b")
    polled(master)

    # When a commit lands on main
    head = repo.commit("Bump", {"VERSION": "1.5.0\n"})

    # Then "test" checks it out, reads its version, tests it and waits for "package", which passes
    test, package = sorted(finished_builds(master.client, 2, timeout=60), key=lambda b: b["builder"] != "test")
    assert (test["builder"], test["result"], test["revision"]) == ("test", "SUCCESS", head)
    assert (package["builder"], package["result"], package["revision"]) == ("package", "SUCCESS", head)
    details = master.client.request("GET", f"/api/builds/{test['id']}")
    assert details["properties"]["version"][0] == "1.5.0"
    assert details["properties"]["got_revision"][0] == head
    assert "testing version 1.5.0" in step_log(master.client, test["id"], 2)
    assert "built dist/app-1.5.0.tar.gz" in step_log(master.client, package["id"], 1)
    worker_dir = Path(tmp_path / package["worker"] / "package" / "build")
    assert (worker_dir / "dist" / "app-1.5.0.tar.gz").exists()


def test_a_polled_branch_with_a_300_character_name_builds_on_postgresql(
    tmp_path, master_factory, worker_factory, postgres_db
):
    # Given a master on PostgreSQL polling every branch of a repository
    repo = GitRepo(tmp_path / "project")
    repo.commit("Start", PROJECT)
    master = master_factory(
        f"""
        from flowbot import AnyBranchScheduler, Builder, GitPoller, Pipeline, Shell, Worker
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s1")],
            sources=[GitPoller({repo.url!r}, branches=True, poll_interval=0.3)],
            schedulers=[AnyBranchScheduler("on-change", builders=["unit"])],
            builders=[Builder("unit", workers=["w1"], steps=[Shell("echo on $FLOWBOT_BRANCH", name="show")])],
        )
        """,
        db=postgres_db,
    )
    worker_factory(master, "w1", "s1")
    polled(master)

    # When a commit lands on a branch whose name is 300 characters long
    branch = "topic/" + "a" * 100 + "/" + "b" * 100 + "/" + "c" * 92
    repo.checkout(branch, new=True)
    revision = repo.commit("On a long branch", {"long.txt": "x\n"})

    # Then the poller reports it and it is built, like any other
    (build,) = finished_builds(master.client, 1)
    assert (build["branch"], build["revision"], build["result"]) == (branch, revision, "SUCCESS")
    assert f"on {branch}" in step_log(master.client, build["id"], 0)
