"""More of the pipeline model end to end: Interpolate's modifiers, SetPropertyFromCommand's extract_fn,
a step interrupting its own command. Each test names the Buildbot behaviour it proves."""

from __future__ import annotations

from pathlib import Path

from ..support import finished_builds, step_log, wait_for


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

