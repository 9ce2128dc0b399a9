"""The ``Step`` base class (``flowbot/steps/base.py``): which steps a restarted master can take up."""

from __future__ import annotations

from flowbot import Git, MakeDirectory, SetPropertyFromCommand, Shell, Step, Trigger
from flowbot.results import Result


class Quick(Shell):
    """Judges its command otherwise: still the command and its judgement, so it resumes."""

    def evaluate(self, outcome):
        return Result.SUCCESS


class TwoCommands(Shell):
    """Runs differently from Shell without saying how to go on: it cannot resume."""

    async def run(self, build):
        await build.run_command("shell", {"command": "true"})
        return await super().run(build)


class Waits(Step):
    async def run(self, build):
        return Result.SUCCESS


class WaitsAndResumes(Waits):
    async def run(self, build):
        return self.judge(await build.run_command("shell", {"command": "sleep 60"}))

    async def resume(self, build, command):
        return self.judge(await command)

    def judge(self, outcome):
        return Result.SUCCESS if outcome.rc == 0 else Result.FAILURE


def test_a_step_resumes_when_whoever_wrote_its_run_wrote_its_resume() -> None:
    resumable = [Shell("make"), Git("https://example.org/r.git"), Quick("make"), WaitsAndResumes()]
    not_resumable = [
        SetPropertyFromCommand("cat VERSION", property="version"),
        TwoCommands("make"),
        Waits(),
        MakeDirectory("out"),
        Trigger(schedulers=["after"]),
    ]

    assert [step.resumable for step in resumable] == [True] * len(resumable)
    assert [step.resumable for step in not_resumable] == [False] * len(not_resumable)
