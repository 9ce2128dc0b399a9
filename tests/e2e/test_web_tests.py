"""A build's test results and its steps' summary lines, in the API, the web page (a real browser), the
CLI and a report, against a real master and worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowbot.errors import InvalidRequest
from flowbot.records import Build, StepRecord
from flowbot.reporters.mail import body
from flowbot.results import Result

from ..support import finished_builds, step_log
from .test_web import expect, page  # noqa: F401 (fixtures)

REPORT = """\
<testsuite name="calc">
  <testcase classname="tests.test_calc" name="test_add" time="0.01"/>
  <testcase classname="tests.test_calc" name="test_divide" time="0.2">
    <failure message="assert 3 == 5">tests/test_calc.py:12: AssertionError: assert 3 == 5</failure>
  </testcase>
  <testcase classname="tests.test_calc" name="test_sub" time="0.01"/>
  <testcase classname="tests.test_net" name="test_fetch"><error message="boom">ConnectionRefusedError</error></testcase>
  <testcase classname="tests.test_net" name="test_slow"><skipped message="slow"/></testcase>
</testsuite>
"""

COMMAND = f"cat > report.xml <<'XML'\n{REPORT}XML\necho ran the tests; exit 1"

PIPELINE = f"""
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Step, Result
class CountTodos(Step):
    async def run(self, build):
        build.set_summary("12 files with TODOs")
        return Result.SUCCESS
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["unit"])],
    builders=[Builder("unit", workers=["w1"], steps=[
        Shell({COMMAND!r}, name="test", junit="report.xml"),
        CountTodos(name="todos", always_run=True),
    ])],
)
"""

SUMMARY = "1 failed, 1 error, 2 passed, 1 skipped"


@pytest.fixture
def master(master_factory, worker_factory):
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s")
    master.client.force("unit")
    finished_builds(master.client, 1, timeout=60)
    return master


def test_the_api_serves_a_builds_tests_failures_first_and_each_steps_summary(master):
    answer = master.client.request("GET", "/api/builds/1/tests")
    assert [(t["outcome"], t["name"]) for t in answer["tests"]] == [
        ("failed", "test_divide"),
        ("error", "test_fetch"),
        ("skipped", "test_slow"),
        ("passed", "test_add"),
        ("passed", "test_sub"),
    ]
    failed = answer["tests"][0]
    assert failed["message"] == "assert 3 == 5"
    assert (failed["file"], failed["line"], failed["step"], failed["step_name"]) == (
        "tests/test_calc.py",
        12,
        0,
        "test",
    )
    assert answer["counts"] == {"failed": 1, "error": 1, "skipped": 1, "passed": 2}
    assert answer["summary"] == SUMMARY
    only = master.client.request("GET", "/api/builds/1/tests", query={"outcome": "failed,error"})["tests"]
    assert [t["name"] for t in only] == ["test_divide", "test_fetch"]
    with pytest.raises(InvalidRequest, match="unknown outcome"):
        master.client.request("GET", "/api/builds/1/tests", query={"outcome": "broken"})

    build = master.client.build(1)
    assert [s["summary"] for s in build["steps"]] == [SUMMARY, "12 files with TODOs"]
    assert build["tests"] == answer["counts"]
    # The master's own errand (fetching the report) is in the step's header log, not in its output
    output = step_log(master.client, 1, 0)
    assert "ran the tests" in output and f"test report build/report.xml: {SUMMARY}" in output
    assert "upload_file" not in output and "flowbot-fetch" not in output
    notes = master.client.request("GET", "/api/builds/1/steps/0/log", query={"name": "header"})
    assert "upload_file: build/report.xml" in notes and "uploaded build/report.xml" in notes

    # The CLI shows the summaries beside the steps
    logs = subprocess.run(
        [sys.executable, "-m", "flowbot", "logs", "unit/1", "--master", master.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"── step 1: test ({SUMMARY}) ──" in logs.stdout
    assert "── step 2: todos (12 files with TODOs) ──" in logs.stdout


def test_the_tests_tab_shows_failures_first_with_their_messages(master, page, expect):  # noqa: F811
    page.goto(f"{master.url}/#/builds/1")
    expect(page.locator('.step[data-step="0"] .summary')).to_have_text(SUMMARY)
    expect(page.locator('.step[data-step="1"] .summary')).to_have_text("12 files with TODOs")
    tab = page.get_by_role("tab", name=f"Tests · {SUMMARY}")
    tab.click()
    items = page.locator("li.test")
    expect(items).to_have_count(5)
    expect(items.first.locator(".outcome")).to_have_text("failed")
    expect(items.first.locator(".test-name")).to_have_text("tests.test_calc.test_divide")
    expect(items.first.locator("pre.message")).to_have_text("assert 3 == 5")
    expect(items.first).to_contain_text("tests/test_calc.py:12")
    expect(items.nth(1).locator(".outcome")).to_have_text("error")
    page.get_by_role("button", name="2 passed").click()
    expect(items).to_have_count(2)
    expect(items.locator(".outcome")).to_have_text(["passed", "passed"])
    # And a link can open the tab itself
    page.goto(f"{master.url}/#/builds/1/tests")
    expect(page.locator("li.test").first.locator(".test-name")).to_have_text("tests.test_calc.test_divide")


def test_a_mail_report_shows_each_steps_summary():
    build = Build(
        id=1,
        builder="unit",
        number=1,
        worker="w1",
        started_at=1.0,
        finished_at=4.0,
        result=Result.FAILURE,
        steps=(StepRecord(0, "test", Result.FAILURE, 1.0, 3.0, SUMMARY), StepRecord(1, "lint", Result.SUCCESS, 3, 4)),
    )
    text = body(build)
    assert f"FAILURE    test                     2.0 s  {SUMMARY}" in text
    assert "SUCCESS    lint                     1.0 s\n" in text
