"""Logs in the web page, in a real browser against a real master: a long coloured log read from its
first line to its last, its first error, its raw download, and the step's header log."""

from __future__ import annotations

import re

import pytest

from ..support import finished_builds, step_log
from .test_web import expect, page  # noqa: F401 (fixtures)

# 5,000 lines in colour (a bold blue first line, green ones, one red error in the middle), then a failure
PIPELINE = r"""
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
SCRIPT = (
    "printf '\\033[1;34mline 1 begins\\033[0m\\n'; i=2; while [ $i -le 5000 ]; do "
    "if [ $i -eq 2500 ]; then printf '\\033[31merror: the disk is full\\033[0m\\n'; "
    "else printf '\\033[32mline %d ok\\033[0m\\n' $i; fi; i=$((i + 1)); done; exit 1"
)
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["long"])],
    builders=[Builder("long", workers=["w1"], steps=[Shell(SCRIPT, name="print")])],
)
"""


@pytest.fixture
def master(master_factory, worker_factory):
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s")
    master.client.force("long")
    finished_builds(master.client, 1, timeout=60)
    return master


def test_a_long_coloured_log_is_read_from_its_first_line_to_its_last(master, page, expect, tmp_path):  # noqa: F811
    stored = step_log(master.client, 1, 0).splitlines()
    total = len(stored)  # the command's header, its 5,000 lines, and how it ended
    assert total == 5002

    # Given the failed build's page: the failing step's log is open at its end, and says how long it is
    page.goto(f"{master.url}/#/builds/1")
    view = page.locator('.step[data-step="0"] .logview')
    log = view.locator("pre.log")
    expect(view.locator(".count")).to_contain_text("5,002 lines")
    expect(log.locator(".line").last).to_have_attribute("data-n", "5002")
    expect(log.locator(".line").last).to_contain_text("program finished with exit code 1")

    # When it is read from the start
    view.get_by_role("button", name="Start").click()
    first = log.locator('.line[data-n="1"]')
    expect(first).to_have_text("shell: " + stored[0].removeprefix("shell: ") + "\n")
    second = log.locator('.line[data-n="2"]')
    expect(second).to_have_text("line 1 begins\n")  # no escape codes shown
    coloured = second.locator("span.a-bold.a-fg-4")
    expect(coloured).to_have_text("line 1 begins")
    assert coloured.evaluate("e => getComputedStyle(e).color") == "rgb(74, 165, 240)"
    expect(log.locator('.line[data-n="3"] span.a-fg-2')).to_have_text("line 2 ok")

    # Then scrolling down fetches the rest, page after page, to the last line, each once and in order
    for _ in range(30):
        if log.locator('.line[data-n="5002"]').count():
            break
        log.evaluate("p => p.scrollTop = p.scrollHeight")
        page.wait_for_timeout(150)
    expect(log.locator('.line[data-n="5002"]')).to_be_visible()
    numbers = log.locator(".line").evaluate_all("lines => lines.map(l => Number(l.dataset.n))")
    assert numbers == list(range(numbers[0], 5003))
    assert len(numbers) >= 4000
    texts = log.locator(".line").evaluate_all("lines => lines.map(l => l.textContent.replace(/\\n$/, ''))")
    assert texts == [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in stored[numbers[0] - 1 :]]

    # And the first error is one click away, marked
    view.get_by_role("button", name="First error").click()
    found = log.locator(".line.found")
    expect(found).to_have_attribute("data-n", "2501")
    expect(found.locator("span.a-fg-1")).to_have_text("error: the disk is full")
    expect(found).to_be_in_viewport()

    # And the raw download is the whole log, escape codes and all
    with page.expect_download() as download:
        view.get_by_role("link", name="Raw").click()
    saved = tmp_path / "raw.log"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "long-1-print-stdio.log"
    assert saved.read_text().splitlines() == stored
    assert "\x1b[1;34mline 1 begins\x1b[0m" in stored


def test_the_api_serves_any_page_of_a_log_and_finds_its_first_error(master):
    assert master.client.log_lines(1, 0, first=2499, count=3) == {
        "first": 2499,
        "total": 5002,
        "lines": [
            ["o", "\x1b[32mline 2499 ok\x1b[0m"],
            ["o", "\x1b[31merror: the disk is full\x1b[0m"],
            ["o", "\x1b[32mline 2501 ok\x1b[0m"],
        ],
    }
    assert master.client.log_lines(1, 0, first=None, count=2)["lines"][-1][0] == "h"
    assert master.client.request("GET", "/api/builds/1/steps/0/lines", query={"find": "error"}) == {
        "line": 2500,
        "total": 5002,
    }
    beyond = master.client.log_lines(1, 0, first=6000, count=10)
    assert beyond == {"first": 5002, "lines": [], "total": 5002}
