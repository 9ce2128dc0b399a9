"""Pull requests as people see them: on each build's page, in the page's list of open pull
requests with their newest builds (Chromium, driven by Playwright), at ``/api/pullrequests``, and in
``History.builds()``; GitHub's real deliveries to a real master and worker."""

from __future__ import annotations

import pytest

from flowbot import History

from ..support import finished_builds
from .test_pull_requests import deliver
from .test_web import expect, page  # noqa: F401 (the browser's fixtures)

PIPELINE = """\
from flowbot import AnyBranchScheduler, Builder, ChangeFilter, GitHubHook, Pipeline, Shell, Worker

pipeline = Pipeline(
    workers=[Worker("w1", secret="s1")],
    sources=[GitHubHook(secret="s3cret")],
    schedulers=[AnyBranchScheduler("pull-requests", builders=["test", "lint"],
                                   change_filter=ChangeFilter(pull_requests=True))],
    builders=[Builder(name, workers=["w1"], steps=[Shell("echo checking")])
              for name in ("test", "lint")],
)
"""

TITLE = "Update the README with new information."  # the fixtures' pull request #2
URL = "https://github.com/Codertocat/Hello-World/pull/2"


@pytest.fixture
def master(master_factory, worker_factory):
    """A master that built pull request #2 twice (two heads) and #3, which was then closed."""
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s1")
    deliver(master, "pull_request.opened", "a" * 40)
    finished_builds(master.client, 2)
    deliver(master, "pull_request.synchronize", "b" * 40)
    deliver(master, "pull_request.opened", "c" * 40, number=3, pull_request__title="Another one")
    finished_builds(master.client, 6)
    deliver(master, "pull_request.closed", "c" * 40, number=3)
    return master


def test_the_api_lists_open_pull_requests_with_their_newest_builds_and_a_build_names_its_own(master):
    # The open pull request, as its newest change describes it, with the newest build of each builder
    (open_one,) = master.client.request("GET", "/api/pullrequests")["pullrequests"]
    assert (open_one["number"], open_one["title"], open_one["url"], open_one["state"]) == (2, TITLE, URL, "open")
    assert (open_one["repository"], open_one["base_branch"], open_one["head_branch"]) == (
        "https://github.com/Codertocat/Hello-World",
        "master",
        "changes",
    )
    assert sorted((b["builder"], b["revision"]) for b in open_one["builds"]) == [("lint", "b" * 40), ("test", "b" * 40)]

    # Closed ones on asking, the most recently changed first
    everything = master.client.request("GET", "/api/pullrequests?state=all")["pullrequests"]
    assert [(p["number"], p["state"]) for p in everything] == [(3, "closed"), (2, "open")]
    assert master.client.request("GET", f"/api/pullrequests/{open_one['id']}")["builds"] == open_one["builds"]

    # A build says which pull request it built
    build = master.client.request("GET", f"/api/builds/{open_one['builds'][0]['id']}")
    assert (build["pull_request"]["number"], build["pull_request"]["title"]) == (2, TITLE)


def test_a_notebook_asks_for_the_builds_of_one_pull_request(master):
    with History(f"sqlite:///{master.basedir / 'state.sqlite'}") as history:
        builds = history.builds()
        assert builds["pull_request"].tolist() == [2, 2, 2, 2, 3, 3]
        of_two = history.builds(pull_request=2)
        assert sorted(of_two["revision"].unique()) == ["a" * 40, "b" * 40]
        with pytest.raises(Exception, match=r"no builds of pull request #7 in the history \(pull requests: #2, #3\)"):
            history.builds(pull_request=7)


def test_the_page_shows_open_pull_requests_and_each_builds_own(master, page, expect):  # noqa: F811
    # Given the page's list of pull requests
    page.goto(master.url + "/#/pullrequests")

    # Then the open one is there, linking to GitHub, with its newest builds; the closed one is not
    row = page.locator("tr[data-pull-request]")
    expect(row).to_have_count(1)
    link = row.get_by_role("link", name=f"#2 {TITLE}")
    expect(link).to_have_attribute("href", URL)
    expect(row.locator(".cell")).to_have_count(2)

    # When someone asks for closed ones too, the closed one shows
    page.get_by_role("link", name="Closed ones too").click()
    expect(page.locator("tr[data-pull-request]")).to_have_count(2)
    expect(page.locator("tr.closed")).to_contain_text("#3 Another one")

    # And a build's page says which pull request it built
    page.goto(master.url + "/#/pullrequests")
    page.locator("tr[data-pull-request] .cell").first.click()
    expect(page.locator(".pull-request a").first).to_have_text(f"#2 {TITLE}")
    expect(page.locator(".pull-request a").first).to_have_attribute("href", URL)
