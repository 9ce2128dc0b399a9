"""Approving a build from its page in a real browser (headless Chromium, driven by Playwright)."""

from __future__ import annotations

from ..support import finished_builds, step_log, wait_for
from .test_web import expect, page  # noqa: F401 (fixtures)

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Approval, ChoiceParameter, Interpolate
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["release"])],
    builders=[Builder("release", workers=["w1"], steps=[
        Approval("ship it", prompt="Ship it to the world?",
                 fields=[ChoiceParameter("channel", choices=["beta", "stable"])]),
        Shell(Interpolate("echo shipping to %(prop:channel)s"), name="ship"),
    ])],
)
"""


def test_a_person_approves_a_waiting_build_from_its_page(master_factory, worker_factory, page, expect):  # noqa: F811
    # Given a build waiting for approval, open in the browser
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s")
    master.client.force("release")
    build = wait_for(lambda: next(iter(master.client.builds(builder="release")), None), 30, "a release build")
    page.goto(f"{master.url}/#/builds/{build['id']}")
    form = page.get_by_role("form", name="Approve or reject ship it")
    expect(page.get_by_text("Ship it to the world?")).to_be_visible()

    # When the person picks a channel, comments and approves
    form.get_by_label("channel").select_option("stable")
    form.get_by_label("Comment").fill("looks good")
    form.get_by_role("button", name="Approve").click()

    # Then the form goes away, and the build goes on with the value chosen
    expect(form).to_have_count(0)
    (done,) = finished_builds(master.client, 1, timeout=60)
    assert done["result"] == "SUCCESS"
    assert "shipping to stable" in step_log(master.client, done["id"], 1)
    expect(page.locator("#build-result")).to_contain_text("SUCCESS")
