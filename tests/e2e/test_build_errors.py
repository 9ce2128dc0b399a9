"""A running build on a real worker: a configuration problem met at run time ends the build as
EXCEPTION, saying what is wrong and where the pipeline wrote it, never as a FAILURE of the code
being built."""

from __future__ import annotations

import sys

import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Property, Result, Shell, Step, Worker


def here() -> int:
    return sys._getframe(1).f_lineno


class RawShell(Step):
    """A custom step that sends the worker a shell command as it is, arguments unchecked."""

    def __init__(self, args: dict, **flags):
        super().__init__(**flags)
        self.args = args

    async def run(self, build):
        outcome = await build.run_command("shell", self.args)
        return Result.SUCCESS if outcome.rc == 0 else Result.FAILURE


async def run_one(tmp_path, step: Step, **properties) -> tuple[str, str]:
    """Force a build of one step on a real worker: the step's result and its log."""
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["b"])],
        builders=[Builder("b", workers=["w1"], steps=[step], properties=properties)],
    )
    master = flowbot.Master(pipeline, db=f"sqlite:///{tmp_path / 'm.db'}", basedir=tmp_path, http=None)
    await master.start()
    try:
        await master.start_local_workers()
        await master.force("b")
        await master.wait_idle(timeout=30)
        steps = master.history.steps()
        (build_id,) = steps["build_id"]
        lines = await master.store.logs.lines(int(build_id), 0)
        return str(steps["result"].iloc[0]), "\n".join(line for _, line in lines)
    finally:
        await master.stop()


async def test_a_renderable_that_makes_a_value_of_the_wrong_kind_is_an_exception_at_its_line(tmp_path) -> None:
    # Given a step whose working directory comes from a property that holds a number
    line = here() + 1
    step = Shell("pwd", workdir=Property("dir"))

    # When it runs
    result, log = await run_one(tmp_path, step, dir=5)

    # Then the build says what is wrong and where, and nothing ran
    assert result == "EXCEPTION"
    assert f"configuration error: {__file__}:{line}: Shell: workdir was rendered as 5 (int); it must be a string" in log
    assert "Traceback" not in log


async def test_a_command_the_worker_refuses_is_an_exception_not_a_failure(tmp_path) -> None:
    # Given a custom step that sends a timeout the worker cannot use
    line = here() + 1
    step = RawShell({"command": "true", "timeout": "10 minutes"})

    # When it runs
    result, log = await run_one(tmp_path, step)

    # Then the step ends as EXCEPTION, naming the problem and the step's line
    assert result == "EXCEPTION"
    assert (
        f"configuration error: {__file__}:{line}: the worker refused the command: "
        "shell timeout must be a number of seconds above 0, not '10 minutes'"
    ) in log
