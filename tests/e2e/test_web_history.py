"""History in the web page, in a real browser against a real master: the grid of revisions by
builder, log search to the line found, a builder's charts, changes linked to builds and back, and
builders grouped and filtered by tags."""

from __future__ import annotations

import pytest

from ..support import finished_builds
from .test_web import expect, page  # noqa: F401 (fixtures)

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[AnyBranchScheduler("on-change", builders=["unit", "lint", "docs"])],
    builders=[
        Builder("unit", workers=["w1"], tags=["tests"], collapse_requests=False, steps=[
            Shell('echo testing $FLOWBOT_REVISION; [ "$FLOWBOT_REVISION" != bad222 ]', name="test"),
        ]),
        Builder("lint", workers=["w1"], tags=["tests", "style"], collapse_requests=False,
                steps=[Shell("echo linted", name="lint")]),
        Builder("docs", workers=["w1"], collapse_requests=False, steps=[Shell("echo docs built", name="docs")]),
    ],
)
"""

REVISIONS = [("good111", "alice", "add the parser"), ("bad222", "bob", "break it"), ("fix333", "carol", "fix it")]


@pytest.fixture
def master(master_factory, worker_factory):
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s")
    for revision, who, comments in REVISIONS:
        master.client.sendchange(branch="main", revision=revision, author=who, comments=comments)
    finished_builds(master.client, 9, timeout=60)
    return master


def test_the_grid_shows_revisions_by_builder_and_links_changes_and_builds(master, page, expect):  # noqa: F811
    page.goto(f"{master.url}/#/grid")
    rows = page.locator("table.grid-table tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("table.grid-table thead th")).to_have_text(["Revision", "Change", "unit", "lint", "docs"])
    bad = page.locator('tr[data-revision="bad222"]')
    expect(bad).to_contain_text("bob: break it")
    expect(bad.locator("td").nth(2).locator(".cell")).to_have_attribute("data-result", "FAILURE")
    expect(bad.locator("td").nth(3).locator(".cell")).to_have_attribute("data-result", "SUCCESS")
    assert rows.first.get_attribute("data-revision") == "fix333"  # newest first

    # The revision links to its change, which links to its builds, which link back
    bad.locator("td").first.get_by_role("link").click()
    expect(page.locator("h1")).to_have_text("Change 2")
    expect(page.locator("pre.comments")).to_have_text("break it")
    builds = page.locator("main .cells a")
    expect(builds).to_have_count(3)
    page.locator("main .cells a", has_text="unit").click()
    expect(page.locator("#build-result")).to_have_text("FAILURE")
    expect(page.locator("dl.facts")).to_contain_text("bob: break it")
    page.locator("dl.facts a", has_text="bad222").click()
    expect(page.locator("h1")).to_have_text("Change 2")

    # The changes list shows each change's builds
    page.goto(f"{master.url}/#/changes")
    expect(page.locator('tr[data-change="1"] .cells a')).to_have_count(3)


def test_log_search_finds_lines_and_opens_the_log_at_the_line(master, page, expect):  # noqa: F811
    page.goto(f"{master.url}/#/search")
    page.get_by_label("Search the logs").fill("testing BAD2")
    page.get_by_role("button", name="Search").click()
    hits = page.locator("section.hit")
    expect(hits).to_have_count(1, timeout=30_000)  # the master's first search loads pandas
    expect(hits.first).to_contain_text("unit #2")
    expect(hits.first.locator("mark")).to_have_text("testing bad2")
    assert "#/search?q=testing%20BAD2" in page.url
    # The line found opens the build's log there, marked
    hits.first.locator("a.line-no").click()
    found = page.locator('.step[data-step="0"] pre.log .line.found')
    expect(found).to_have_text("testing bad222\n")
    expect(found).to_be_in_viewport()
    # A search that finds nothing says so
    page.goto(f"{master.url}/#/search?q=no%20such%20text")
    expect(page.locator(".search-results")).to_have_text("No log line holds “no such text”.")


def test_a_builders_page_charts_its_results_durations_and_failure_rate(master, page, expect):  # noqa: F811
    page.goto(f"{master.url}/#/builders/unit")
    charts = page.locator(".charts svg.chart")
    expect(charts).to_have_count(3)
    results = charts.nth(0).locator("rect")
    expect(results).to_have_count(3)
    assert [r.get_attribute("class") for r in results.all()] == ["r-SUCCESS", "r-FAILURE", "r-SUCCESS"]
    expect(charts.nth(1).locator("rect")).to_have_count(3)
    expect(charts.nth(2)).to_have_attribute("aria-label", "failure rate over the last 10 builds: 33 %")
    expect(charts.nth(2).locator("circle title").nth(1)).to_have_text("#2 FAILURE: 50 % of the last 2 failed")
    # A new build shows in the charts as it happens, without a reload
    page.evaluate("window.notReloaded = true")
    master.client.sendchange(branch="main", revision="next444", author="dave", comments="more")
    expect(results).to_have_count(4)
    expect(charts.nth(0).locator("rect").last).to_have_class("r-SUCCESS")
    expect(charts.nth(2)).to_have_attribute("aria-label", "failure rate over the last 10 builds: 25 %")
    assert page.evaluate("window.notReloaded") is True


def test_builders_are_grouped_and_filtered_by_tag(master, page, expect):  # noqa: F811
    page.goto(f"{master.url}/#/")
    expect(page.locator(".tag-filter a")).to_have_text(["All", "style", "tests"])
    expect(page.locator(".grid h2.group")).to_have_text(["tests", "untagged"])
    expect(page.locator(".grid .row")).to_have_count(3)
    page.locator(".tag-filter a", has_text="style").click()
    expect(page.locator(".grid .row")).to_have_count(1)
    expect(page.locator(".grid .row .name")).to_have_text("lint")
    page.locator(".tag-filter a", has_text="tests").click()
    expect(page.locator(".grid .row .name")).to_have_text(["unit", "lint"])  # in the pipeline's order
