"""The web page in a real browser (Debian's headless Chromium, driven by Playwright) against a real master."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..support import finished_builds, running_build, step_log

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler{imports}
pipeline = Pipeline(
    workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
    schedulers=[ForceScheduler("force", builders=["quick", "slow"])],
    builders=[
        Builder("quick", collapse_requests=False, workers=["w1"],
                steps=[Shell("sleep 1; echo hello from quick", name="greet")]),
        Builder("slow", collapse_requests=False, workers=["w2"], steps=[
            Shell("for i in $(seq 1 600); do echo tick $i; sleep 0.2; done", name="wait"),
        ]),
    ],{auth}
)
"""


@pytest.fixture
def master(master_factory, worker_factory):
    master = master_factory(PIPELINE.format(imports="", auth=""))
    worker_factory(master, "w1", "s")
    worker_factory(master, "w2", "s")
    return master


@pytest.fixture
def expect(browser):
    """Playwright's assertions; the ``browser`` fixture has made sure Playwright is there (a test
    skips without it locally, and fails without it in CI)."""
    from playwright.sync_api import expect

    return expect


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(20_000)
    yield page
    context.close()
    assert errors == [], errors


def test_force_a_build_watch_it_turn_green_and_read_its_log(master, page, expect):
    # Given the overview, open in the browser
    page.goto(master.url + "/")
    row = page.locator('.row[data-builder="quick"]')
    expect(row.locator(".state")).to_have_text("idle")
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.notReloaded = true")

    # When a build is forced through the form
    row.get_by_role("button", name="Force quick").click()
    row.get_by_label("Reason").fill("trying the page")
    row.get_by_label("Branch").fill("main")
    row.get_by_role("button", name="Force build").click()
    expect(page.locator("#toast")).to_have_text("Forced quick")

    # Then its cell appears running and turns green, live, without a reload
    cell = row.locator(".cell").first
    expect(cell).to_have_attribute("data-result", "running")
    expect(cell).to_have_attribute("data-result", "SUCCESS")
    expect(cell).to_have_text("#1")
    assert page.evaluate("window.notReloaded") is True

    # And its page shows the build and, one click away, its log
    cell.click()
    expect(page.locator("h1")).to_contain_text("quick#1")
    expect(page.locator("#build-result")).to_have_text("SUCCESS")
    expect(page.locator("dl.facts")).to_contain_text("trying the page")
    page.locator('.step[data-step="0"] .head').click()
    expect(page.locator('.step[data-step="0"] pre.log')).to_contain_text("hello from quick")


def test_follow_a_long_build_live_and_stop_it(master, page, expect):
    page.goto(master.url + "/#/builders/slow")
    page.get_by_role("button", name="Force build…").click()
    page.get_by_role("button", name="Force build").click()

    # The build appears on the builder's page; its page tails the log as it grows
    page.locator("tbody tr a").first.click()
    log = page.locator('.step[data-step="0"] pre.log')
    expect(log).to_contain_text("tick 3")
    expect(log).to_contain_text("tick 12")
    expect(page.locator("#build-result")).to_have_text("running")

    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#build-result")).to_have_text("CANCELLED", timeout=30_000)
    expect(page.get_by_role("button", name="Rebuild")).to_be_visible()
    expect(page.locator('.step[data-step="0"] .result')).to_have_text("CANCELLED")
    (build,) = finished_builds(master.client, 1, builder="slow")
    assert build["result"] == "CANCELLED"


#: Keeps the page's WebSockets within reach, and while ``window.offline`` is set sends new ones
#: to an address that refuses them, as a master out of reach would.
SOCKETS = """
const Real = window.WebSocket;
window.sockets = [];
window.offline = false;
window.WebSocket = class extends Real {
  constructor(url, ...rest) {
    super(window.offline ? String(url).replace("/api/events", "/api/offline") : url, ...rest);
    window.sockets.push(this);
  }
};
"""


def test_a_live_log_misses_no_line_and_repeats_none_across_a_reconnect(master, page, expect):
    # Given a build's page following its log live
    page.add_init_script(SOCKETS)
    master.client.force("slow")
    build = running_build(master.client, "slow")
    page.goto(f"{master.url}/#/builds/{build['id']}")
    log = page.locator('.step[data-step="0"] pre.log')
    expect(log).to_contain_text("tick 3")

    # When its event stream drops and stays down while the build prints more
    page.evaluate("window.offline = true; window.sockets.at(-1).close()")
    expect(page.locator("#live")).to_have_class("live off")
    time.sleep(3)
    page.evaluate("window.offline = false")
    expect(page.locator("#live")).to_have_class("live", timeout=30_000)

    # Then, once the log has gone on live, every line is there exactly once, in order
    printed = int(re.findall(r"tick (\d+)", step_log(master.client, build["id"], 0))[-1])
    expect(log).to_contain_text(f"tick {printed + 5}\n")
    ticks = [int(n) for n in re.findall(r"tick (\d+)", log.text_content())]
    assert ticks == list(range(1, len(ticks) + 1)) and len(ticks) > printed


HIDDEN = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Result
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["tidy"])],
    builders=[Builder("tidy", workers=["w1"], steps=[
        Shell("sleep 4; echo preparing", name="prepare", hide_step_if=lambda result, build: result == Result.SUCCESS),
        Shell("sleep 1; echo working", name="work"),
        Shell("echo cleaning", name="clean", hide_step_if=True),
    ])],
)
"""


def test_the_build_page_hides_the_steps_the_pipeline_hides(master_factory, worker_factory, page, expect):
    master = master_factory(HIDDEN)
    worker_factory(master, "w1", "s")

    # Given a build's page open while its first step runs: a step is hidden only once it ends
    master.client.force("tidy")
    build = running_build(master.client, "tidy")
    page.goto(f"{master.url}/#/builds/{build['id']}")
    step = {name: page.locator(f'.step[data-step="{n}"]') for n, name in enumerate(["prepare", "work", "clean"])}
    expect(step["prepare"]).to_be_visible()

    # When it ends (its steps sleep 5 s in all), the steps that hide_step_if hides go, live, and
    # the others stay
    expect(page.locator("#build-result")).to_have_text("SUCCESS", timeout=30_000)
    expect(step["prepare"]).to_be_hidden()
    expect(step["clean"]).to_be_hidden()
    expect(step["work"]).to_be_visible()

    # And they are one click away, on this page as on a page opened afresh
    page.reload()
    expect(step["work"]).to_be_visible()
    expect(step["prepare"]).to_be_hidden()
    page.get_by_role("button", name="Show 2 hidden steps").click()
    expect(step["prepare"]).to_be_visible()
    expect(step["clean"]).to_be_visible()
    page.get_by_role("button", name="Hide hidden steps").click()
    expect(step["clean"]).to_be_hidden()


def test_text_from_builds_is_shown_as_text_never_run(master, page, expect):
    master.client.force("quick", reason='<img src=x onerror="window.pwned=1">', branch="<b>main</b>")
    (build,) = finished_builds(master.client, 1)
    page.goto(f"{master.url}/#/builds/{build['id']}")
    expect(page.locator("dl.facts")).to_contain_text('<img src=x onerror="window.pwned=1">')
    expect(page.locator("dl.facts")).to_contain_text("<b>main</b>")
    assert page.evaluate("window.pwned") is None
    assert page.locator("dl.facts img, dl.facts b").count() == 0

    # A worker paused for a reason with markup in it: shown as text, with buttons that act live
    master.client.pause_worker("w1", '<img src=x onerror="window.pwned=1">')
    page.goto(f"{master.url}/#/workers")
    w1, w2 = page.locator('tr[data-worker="w1"]'), page.locator('tr[data-worker="w2"]')
    expect(w1.locator(".state")).to_have_text('connected · paused: <img src=x onerror="window.pwned=1">')
    assert page.evaluate("window.pwned") is None and page.locator("main img").count() == 0
    w1.get_by_role("button", name="Unpause").click()
    expect(w1.locator(".state")).to_have_text("connected")
    w1.get_by_role("button", name="Pause").click()
    expect(w1.locator(".state")).to_have_text("connected · paused: paused from the web page")
    page.once("dialog", lambda dialog: dialog.accept())
    w2.get_by_role("button", name="Shut down").click()
    expect(w2.locator(".state")).to_have_text("offline")


def test_a_protected_master_asks_for_a_login_before_forcing(master_factory, worker_factory, page, expect):
    master = master_factory(PIPELINE.format(imports=", Auth", auth='\n    auth=Auth(users={"alice": "wonderland"}),'))
    worker_factory(master, "w1", "s")
    page.goto(master.url + "/")
    row = page.locator('.row[data-builder="quick"]')
    row.get_by_role("button", name="Force quick").click()
    row.get_by_role("button", name="Force build").click()

    # Refused, the page offers the login form
    expect(page.locator("#toast")).to_contain_text("needs credentials")
    dialog = page.locator("dialog.login")
    dialog.get_by_label("User").fill("alice")
    dialog.get_by_label("Password").fill("wonderland")
    dialog.get_by_role("button", name="Log in").click()
    expect(page.locator("#user")).to_contain_text("alice")

    row.get_by_role("button", name="Force build").click()
    expect(row.locator(".cell").first).to_have_attribute("data-result", "SUCCESS")
    assert (
        "forced by alice"
        in master.client.request("GET", f"/api/builds/{row.locator('.cell').first.get_attribute('data-build')}")[
            "reason"
        ]
    )


def test_the_overview_fits_a_phone(master, page, expect):
    master.client.force("quick")
    finished_builds(master.client, 1)
    page.set_viewport_size({"width": 375, "height": 700})
    page.goto(master.url + "/")
    expect(page.locator('.row[data-builder="quick"] .cell')).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


TYPED = """\
from flowbot import (Pipeline, Worker, Builder, Shell, ForceScheduler, StringParameter, IntParameter,
                     BoolParameter, ChoiceParameter)
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["release"], params=[
        StringParameter("version", required=True),
        IntParameter("jobs", default=2, minimum=1, maximum=64),
        BoolParameter("dry_run", default=True),
        ChoiceParameter("channel", choices=["beta", "stable"]),
    ])],
    builders=[Builder("release", workers=["w1"], steps=[Shell("true")])],
)
"""


def test_the_force_form_checks_typed_parameters_and_the_build_gets_them(master_factory, worker_factory, page, expect):
    master = master_factory(TYPED)
    worker_factory(master, "w1", "s")
    page.goto(master.url + "/#/builders/release")
    page.get_by_role("button", name="Force build…").click()
    form = page.locator("form.force-form")
    version, jobs = form.get_by_label("version", exact=True), form.get_by_label("jobs", exact=True)

    # An empty required field, or a number out of range, keeps the form from being sent
    jobs.fill("100")
    form.get_by_role("button", name="Force build").click()
    assert version.evaluate("input => input.validity.valueMissing")
    version.fill("2.0")
    form.get_by_role("button", name="Force build").click()
    assert jobs.evaluate("input => input.validity.rangeOverflow")
    expect(page.locator("#toast")).not_to_have_class(re.compile(r"\bshow\b"))  # nothing was sent
    assert master.client.builds() == []

    # Filled in, the forced build gets each value as a property of its type
    jobs.fill("8")
    form.get_by_label("dry_run", exact=True).uncheck()
    form.get_by_label("channel", exact=True).select_option("stable")
    form.get_by_role("button", name="Force build").click()
    expect(page.locator("#toast")).to_have_text("Forced release")
    (build,) = finished_builds(master.client, 1)
    properties = master.client.request("GET", f"/api/builds/{build['id']}")["properties"]
    typed = {name: properties[name][0] for name in ("version", "jobs", "dry_run", "channel")}
    assert typed == {"version": "2.0", "jobs": 8, "dry_run": False, "channel": "stable"}


@pytest.mark.parametrize(("ci", "outcome"), [("", "1 skipped"), ("1", "1 error")])
def test_without_playwright_the_browser_tests_skip_locally_and_fail_in_ci(tmp_path, ci, outcome):
    # Given a Python where Playwright cannot be imported
    blocked = tmp_path / "blocked" / "playwright"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('Playwright is blocked for this test')\n")
    root = Path(__file__).parents[2]
    env = {
        **os.environ,
        "CI": ci,
        "PYTHONPATH": os.pathsep.join([str(blocked.parent), os.environ.get("PYTHONPATH", "")]),
    }

    # When a browser test runs there, locally and under CI
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            f"{__file__}::test_the_overview_fits_a_phone",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then it is skipped locally and fails in CI, saying why
    assert outcome in run.stdout, run.stdout
    assert "Playwright is not installed" in run.stdout + run.stderr


def test_the_overview_counts_a_deep_queue_live_though_its_listing_names_only_the_first_requests(
    master_factory, worker_factory, page, expect
):
    # Given more builds of quick waiting than the builders' listing names, with no worker yet
    master = master_factory(PIPELINE.format(imports="", auth=""))
    forced = [master.client.force("quick")[0] for _ in range(12)]
    page.goto(master.url + "/")
    state = page.locator('.row[data-builder="quick"] .state')
    expect(state).to_have_text("12 pending")
    expect(page.locator("#live")).to_have_text("live")

    # When the last one, which the listing did not name, is cancelled
    master.client.request("POST", f"/api/buildrequests/{forced[-1]}/cancel")
    # Then the count follows, live
    expect(state).to_have_text("11 pending")

    # And when a worker builds them all, the count goes down to nothing
    worker_factory(master, "w1", "s")
    finished_builds(master.client, 11, timeout=120)
    expect(state).to_have_text("idle")
