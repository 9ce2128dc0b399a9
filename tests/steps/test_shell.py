"""The ``Shell`` step (``flowbot/steps/shell.py``) against a stand-in build: what it does with a test report."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from flowbot import ConfigError, Interpolate, Shell
from flowbot.config import load_source
from flowbot.junit import TestCase
from flowbot.results import Result
from flowbot.steps.base import CommandResult

CASE = (
    '<testcase classname="tests.test_mod" name="test_{}" time="0.01"><failure message="no">trace</failure></testcase>'
)


class ReportingBuild:
    """Just enough of a build for a step whose command wrote ``report``: the rest is what it recorded."""

    def __init__(self, report: bytes):
        self.report = report
        self.fetched: list[str] = []
        self.headers: list[str] = []
        self.cases: list[TestCase] = []

    def render(self, value: Any) -> Any:
        return value

    def env(self) -> dict[str, str]:
        return {}

    async def run_command(self, name: str, args: dict[str, Any], **options: Any) -> CommandResult:
        return CommandResult(0)

    async def fetch(self, source: str, *, max_size: int = 0) -> bytes:
        self.fetched.append(source)
        return self.report

    def log(self, name: str = "stdio") -> ReportingBuild:
        return self

    def header(self, text: str) -> None:
        self.headers.append(text)

    def record_tests(self, cases: list[TestCase]) -> None:
        self.cases += cases


async def test_a_big_test_report_is_read_while_the_master_goes_on() -> None:
    # Given a command that wrote a report of a hundred thousand failed tests (about 13 MB)
    cases = "".join(CASE.format(i) for i in range(100_000))
    build = ReportingBuild(f'<testsuite name="big">{cases}</testsuite>'.encode())
    gaps: list[float] = []

    async def beat() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    # When the step reads it, while something else on the loop wants to run every 5 ms
    heart = asyncio.create_task(beat())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    result = await Shell("pytest", junit="report.xml").run(build)
    took = time.perf_counter() - started
    await asyncio.sleep(0.02)  # one more beat, to measure the last pause too
    heart.cancel()

    # Then every test is recorded, and the loop never stood still for more than a fraction of the read
    assert result == Result.SUCCESS
    assert len(build.cases) == 100_000
    assert "test report build/report.xml: 100000 failed" in build.headers
    assert max(gaps) < took / 3, (max(gaps), took)


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        (b'<?xml version="1.0" encoding="bogus"?><testsuite/>', "cannot be decoded (unknown encoding: bogus)"),
        ('<?xml version="1.0" encoding="shift_jis"?><testsuite/>'.encode("shift_jis"), "multi-byte encodings"),
        ('<?xml version="1.0" encoding="euc-jp"?><testsuite/>'.encode("euc-jp"), "multi-byte encodings"),
        ('<?xml version="1.0" encoding="utf-32"?><testsuite/>'.encode("utf-32"), "is not well-formed XML"),
        (b"<testsuite><testcase name='a'>", "is not well-formed XML"),
        (b"<testsuite><testcase/></testsuite>", "has a <testcase> without a name"),
    ],
)
async def test_a_malformed_report_makes_the_step_warn_and_says_why(report: bytes, reason: str) -> None:
    # Given a command that passed but wrote a report that cannot be read
    build = ReportingBuild(report)
    # When the step collects it
    result = await Shell("pytest", junit="report.xml").run(build)
    # Then the step warns, its log says why, and no test is recorded
    assert result == Result.WARNINGS
    (header,) = build.headers
    assert header.startswith("test report build/report.xml: build/report.xml ") and reason in header
    assert build.cases == []


async def test_an_absolute_report_path_is_fetched_as_written() -> None:
    build = ReportingBuild(b"<testsuite><testcase name='t'/></testsuite>")
    assert await Shell("pytest", junit="/srv/worker/unit/report.xml").run(build) == Result.SUCCESS
    assert await Shell("pytest", workdir="build/sub", junit="out/report.xml").run(build) == Result.SUCCESS
    assert build.fetched == ["/srv/worker/unit/report.xml", "build/sub/out/report.xml"]


@pytest.mark.parametrize(
    ("command", "what"),
    [
        ("42", "got 42 (int)"),
        ("b'make'", "got b'make' (bytes)"),
        ("{'make': 'test'}", "got {'make': 'test'} (dict)"),
        ("['make', 3]", "got an argument 3 (int) that is neither text nor a renderable"),
        ("['make', ['-j', '4']]", "got an argument ['-j', '4'] (list)"),
    ],
)
@pytest.mark.parametrize("step", ["Shell({})", "SetPropertyFromCommand({}, 'out')"])
def test_a_command_that_is_not_text_fails_the_pipeline_at_its_line(step: str, command: str, what: str) -> None:
    # Given a pipeline file whose second step's command is not one
    source = textwrap.dedent(f"""\
        from flowbot import SetPropertyFromCommand, Shell

        steps = [
            Shell("make"),
            {step.format(command)},
        ]
    """)
    # When it is checked, then the error names the file, the line and the problem
    with pytest.raises(ConfigError, match="command must be a string, a renderable or a list of them") as caught:
        load_source(source, "/masters/demo/pipeline.py")
    assert (caught.value.filename, caught.value.lineno) == ("/masters/demo/pipeline.py", 5)
    assert what in caught.value.problem


def test_text_renderables_and_lists_of_them_are_commands() -> None:
    for command in ("make", Interpolate("make %(prop:target)s"), ["make", Interpolate("%(prop:t)s"), Path("x")]):
        assert Shell(command).command == command


async def test_a_shell_step_taken_up_judges_its_command_as_its_run_would() -> None:
    # Given a step with a test report, taken up after a master restart while its command ran
    build = ReportingBuild(f"<testsuite>{CASE.format('a')}</testsuite>".encode())
    step = Shell("pytest", junit="report.xml")

    async def failed() -> CommandResult:
        return CommandResult(1)

    # When the command ends
    result = await step.resume(build, asyncio.ensure_future(failed()))

    # Then the step fails as its command did, and still reads the report
    assert result == Result.FAILURE
    assert build.fetched == ["build/report.xml"] and [c.name for c in build.cases] == ["test_a"]
