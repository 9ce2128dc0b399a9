"""More of the pipeline model end to end: Interpolate's modifiers, SetPropertyFromCommand's extract_fn,
a step interrupting its own command, collapse functions, triggers that do not wait, worker locks on
builders and secrets from the environment. Each test names the Buildbot behaviour it proves."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from ..support import finished_builds, running_build, step_log, wait_for


def build_detail(client, build_id: int) -> dict:
    return client.request("GET", f"/api/builds/{build_id}")


def test_modifiers_and_extract_fn_read_a_build_as_buildbot_does(master_factory, worker_factory):
    # Buildbot: Interpolate's documented modifiers, and interop/test_setpropertyfromcommand.py
    master = master_factory("""
        from flowbot import (Pipeline, Worker, Builder, Shell, SetProperty, SetPropertyFromCommand, Interpolate,
                             ForceScheduler)

        def count(rc, stdout, stderr):
            return {"rc": rc, "passed": stdout.count("ok"), "failed": stderr.count("FAIL")}

        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["render"])],
            builders=[Builder("render", workers=["w1"], steps=[
                SetProperty("empty", ""),
                SetPropertyFromCommand("echo ok; echo ok; echo FAIL >&2; exit 3", extract_fn=count, name="tests",
                                       flunk_on_failure=False),
                SetPropertyFromCommand("echo 9.9; exit 1", property="version", name="version",
                                       flunk_on_failure=False),
                Shell(Interpolate("echo set=%(prop:empty:?|yes|no)s true=%(prop:empty:#?|yes|no)s"
                                  " missing=%(prop:missing:?|yes|no)s version=%(prop:version:-none)s"
                                  " tag=%(prop:tag:-%(prop:branch:-trunk)s)s passed=%(prop:passed)s"), name="show"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("render")
    (build,) = finished_builds(master.client, 1)
    detail = build_detail(master.client, build["id"])

    # extract_fn saw the failed command's exit code and output; property= is set only on success
    assert [(s["name"], s["result"]) for s in detail["steps"]][1:] == [
        ("tests", "FAILURE"),
        ("version", "FAILURE"),
        ("show", "SUCCESS"),
    ]
    properties = detail["properties"]
    assert {name: properties[name][0] for name in ("rc", "passed", "failed")} == {"rc": 3, "passed": 2, "failed": 1}
    assert properties["rc"][1] == "SetPropertyFromCommand Step"
    assert "version" not in properties
    # :? asks whether the value is set, :#? whether it is true; a default holds another key
    assert "set=yes true=no missing=no version=none tag=trunk passed=2\n" in step_log(master.client, build["id"], 3)


SOAK = """
    import asyncio
    import os
    import time
    from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Result, Step

    async def until(build, name):
        for _ in range(600):  # the test creates the file beside the master's pipeline
            if os.path.exists(os.path.join(build.master_dir, name)):
                return
            await asyncio.sleep(0.05)

    class Soak(Step):
        async def run(self, build):
            command = build.start_command("shell", {"command": "echo $$ > soak.pid; exec sleep 60"})
            await until(build, "go")
            began = time.monotonic()
            command.interrupt("soaked long enough")
            outcome = await command
            build.set_property("outcome", [outcome.rc, outcome.reason, time.monotonic() - began], "Soak")
            return Result.SUCCESS if outcome.reason == "interrupted" else Result.FAILURE

    class Forgetful(Step):
        async def run(self, build):
            build.start_command("shell", {"command": "echo $$ > left.pid; exec sleep 60"})
            await until(build, "go-on")
            return Result.SUCCESS

    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["soak"])],
        builders=[Builder("soak", workers=["w1"], steps=[
            Soak(name="soak"), Forgetful(name="forgetful"), Shell("echo after", name="after"),
        ])],
    )
"""


def running_pid(path: Path) -> int:
    """The process id a command wrote to ``path``, once it is there and the process is sleeping."""
    text = wait_for(lambda: path.exists() and path.read_text().strip(), 20, f"{path.name} on the worker")
    assert b"sleep" in Path(f"/proc/{text}/cmdline").read_bytes()
    return int(text)


def test_a_custom_step_interrupts_its_own_command_and_decides_its_result(master_factory, worker_factory, tmp_path):
    # Buildbot: interop/test_interruptcommand.py
    master = master_factory(SOAK)
    worker_factory(master, "w1", "s")
    builddir = tmp_path / "w1" / "soak"

    # Given a step whose command sleeps on the worker
    master.client.force("soak")
    soak = running_pid(builddir / "soak.pid")

    # When the step interrupts it
    (master.basedir / "go").touch()

    # Then the command is killed at once, the step says how that went, and the build goes on
    forgotten = running_pid(builddir / "left.pid")
    assert not Path(f"/proc/{soak}").exists()
    # And a command its step leaves running is interrupted when the step ends
    (master.basedir / "go-on").touch()
    (build,) = finished_builds(master.client, 1, timeout=20)
    assert not Path(f"/proc/{forgotten}").exists()
    detail = build_detail(master.client, build["id"])
    assert detail["result"] == "SUCCESS"
    assert [(s["name"], s["result"]) for s in detail["steps"]] == [
        ("soak", "SUCCESS"),
        ("forgetful", "SUCCESS"),
        ("after", "SUCCESS"),
    ]
    rc, reason, took = detail["properties"]["outcome"][0]
    assert (rc, reason) == (-15, "interrupted") and took < 5
    assert "soaked long enough" in step_log(master.client, build["id"], 0)
    assert "its step ended" in step_log(master.client, build["id"], 1)


def test_a_collapse_function_decides_which_waiting_requests_merge(master_factory, worker_factory, tmp_path):
    # Buildbot: collapseRequests given a function
    go = tmp_path / "go"
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler

        def same_branch(new, old):
            return new.branch == old.branch

        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["test"])],
            builders=[Builder("test", workers=["w1"], collapse_requests=same_branch, steps=[
                Shell("while [ ! -e {go} ]; do sleep 0.05; done", name="wait"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    client = master.client
    # Given a build running
    (first,) = client.force("test", branch="main", revision="m1")
    running_build(client, "test")

    # When forced requests, which Buildbot's own rule never merges (their revisions differ), queue behind it
    (m2,) = client.force("test", branch="main", revision="m2")
    (f1,) = client.force("test", branch="feature", revision="f1")
    (m3,) = client.force("test", branch="main", revision="m3")
    go.touch()

    # Then the function merged the older one of main into the newer, and left the other branch alone
    wait_for(lambda: client.buildrequests(pending=True) == [], 30, "the queue to empty")
    done = {r["id"]: r["result"] for r in client.buildrequests(pending=False)}
    assert [done[i] for i in (first, m2, f1, m3)] == ["SUCCESS", "SKIPPED", "SUCCESS", "SUCCESS"]
    assert sorted(b["revision"] for b in client.builds()) == ["f1", "m1", "m3"]


def test_a_trigger_that_does_not_wait_lets_its_parent_end_while_the_child_runs(
    master_factory, worker_factory, tmp_path
):
    # Buildbot: Trigger(waitForFinish=False)
    go = tmp_path / "go"
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, Shell, Trigger, Triggerable, ForceScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["parent"]), Triggerable("later", builders=["child"])],
            builders=[
                Builder("parent", workers=["w1"], steps=[
                    Trigger("later", wait_for_finish=False, set_properties={{"from_parent": "yes"}}),
                    Shell("echo parent done", name="after"),
                ]),
                Builder("child", workers=["w1"], steps=[Shell("while [ ! -e {go} ]; do sleep 0.05; done")]),
            ],
        )
    """)
    worker_factory(master, "w1", "s")

    # When the parent triggers its child
    master.client.force("parent", branch="main", revision="r1")

    # Then the parent ends while the child still runs, on the parent's sources
    (parent,) = finished_builds(master.client, 1, builder="parent")
    child = running_build(master.client, "child")
    assert parent["result"] == "SUCCESS"
    assert (child["branch"], child["revision"]) == ("main", "r1")
    assert build_detail(master.client, child["id"])["properties"]["from_parent"] == ["yes", "Trigger"]
    go.touch()
    (child,) = finished_builds(master.client, 1, builder="child")
    assert child["result"] == "SUCCESS"
    assert child["finished_at"] > parent["finished_at"]


def test_a_builder_worker_lock_keeps_builds_apart_on_a_worker_but_not_across_workers(master_factory, worker_factory):
    # Buildbot: test_locks.py, WorkerLock(maxCountForWorker=...)
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, WorkerLock
        disk = WorkerLock("disk", max_count=4, max_count_for_worker={"w1": 1, "w2": 1})
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
            schedulers=[ForceScheduler("force", builders=["compile", "package"])],
            builders=[
                Builder(name, workers=["w1", "w2"], collapse_requests=False, locks=[disk.access("counting")],
                        steps=[Shell("sleep 1")])
                for name in ("compile", "package")
            ],
        )
    """)
    worker_factory(master, "w1", "s")
    worker_factory(master, "w2", "s")

    # When two builders sharing the lock get two requests each
    for name in ("compile", "package", "compile", "package"):
        master.client.force(name)
    builds = finished_builds(master.client, 4, timeout=30)

    # Then builds on one worker never overlap, and builds on the two workers do
    assert {b["result"] for b in builds} == {"SUCCESS"}
    on = {w: sorted((b for b in builds if b["worker"] == w), key=lambda b: b["started_at"]) for w in ("w1", "w2")}
    assert on["w1"] and on["w2"]
    for runs in on.values():
        assert all(later["started_at"] >= earlier["finished_at"] - 0.01 for earlier, later in pairwise(runs))
    assert any(
        a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"] for a in on["w1"] for b in on["w2"]
    )


def test_a_secret_from_the_masters_environment_is_used_and_hidden(
    master_factory, worker_factory, monkeypatch, tmp_path
):
    # Buildbot: SecretInAFile's sibling for environment variables
    monkeypatch.setenv("FB_TEST_SECRET_deploy_token", "env-s3cr3t-value")
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Interpolate, SecretsInEnvironment
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            secrets=[SecretsInEnvironment("FB_TEST_SECRET_")],
            schedulers=[ForceScheduler("force", builders=["deploy"])],
            builders=[Builder("deploy", workers=["w1"], steps=[
                Shell(Interpolate("echo deploying with %(secret:deploy_token)s | tee used.txt"), name="deploy"),
            ])],
        )
    """)
    monkeypatch.delenv("FB_TEST_SECRET_deploy_token")  # only the master has it
    worker_factory(master, "w1", "s")

    master.client.force("deploy")
    (build,) = finished_builds(master.client, 1)

    # The command got the real value; its log and the build's properties show only where it was
    assert build["result"] == "SUCCESS"
    assert (tmp_path / "w1" / "deploy" / "build" / "used.txt").read_text() == "deploying with env-s3cr3t-value\n"
    log = step_log(master.client, build["id"], 0)
    assert "deploying with <secret>" in log
    assert "env-s3cr3t" not in log + str(build_detail(master.client, build["id"])["properties"])
