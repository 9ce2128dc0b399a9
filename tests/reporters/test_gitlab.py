"""GitLabCommitStatus against a local stand-in for GitLab's API that checks what it is sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowbot import GitLabCommitStatus
from flowbot.errors import ReportRejected
from flowbot.records import Build, SourceStamp
from flowbot.reporters.gitlab import project_path
from flowbot.results import Result

from ..hosting_api import HostingAPI

HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"


@pytest.fixture
def gitlab() -> Iterator[HostingAPI]:
    api = HostingAPI(token="glpat-1")
    yield api
    api.close()


@pytest.mark.parametrize(
    ("stamp", "path"),
    [
        (SourceStamp(repository="http://example.com/x/y.git", project="gitlabhq/gitlab-test"), "gitlabhq/gitlab-test"),
        (SourceStamp(repository="https://gitlab.com/group/sub/project.git"), "group/sub/project"),
        (SourceStamp(repository="git@gitlab.com:group/project.git"), "group/project"),
        (SourceStamp(repository="/srv/git/project.git", project="team/tool"), "team/tool"),
        (SourceStamp(repository="project"), None),
    ],
)
def test_the_project_of_a_source_stamp(stamp, path):
    assert project_path(stamp) == path


def merge_request_build(result: Result | None) -> Build:
    properties = {"pr_number": [1, "Change"], "pr_head_branch": ["ms-viewport", "Change"]}
    return Build(
        id=4,
        builder="unit",
        number=2,
        worker="w1",
        started_at=100.0,
        finished_at=None if result is None else 160.0,
        result=result,
        sourcestamps=(
            SourceStamp(
                repository="http://example.com/gitlabhq/gitlab-test.git",
                branch="refs/merge-requests/1/head",
                revision=HEAD,
                project="gitlabhq/gitlab-test",
            ),
        ),
        properties=properties,
        url="https://ci.example.com/#/builds/4",
    )


async def test_a_merge_requests_head_gets_running_then_its_result_under_its_source_branch(gitlab):
    reporter = GitLabCommitStatus("glpat-1", base_url=gitlab.url)
    await reporter.build_started(merge_request_build(None))
    await reporter.build_finished(merge_request_build(Result.FAILURE))

    assert [r["path"] for r in gitlab.requests] == [f"/api/v4/projects/gitlabhq%2Fgitlab-test/statuses/{HEAD}"] * 2
    assert all(r["headers"]["private-token"] == "glpat-1" for r in gitlab.requests)
    assert [(s["state"], s["ref"], s["name"]) for s in gitlab.statuses] == [
        ("running", "ms-viewport", "flowbot/unit"),
        ("failed", "ms-viewport", "flowbot/unit"),
    ]
    assert gitlab.statuses[1]["target_url"] == "https://ci.example.com/#/builds/4"
    assert gitlab.statuses[1]["description"] == "build #2: FAILURE in 60 s"

    # A wrong token is refused, and not tried again
    with pytest.raises(ReportRejected, match="401"):
        await GitLabCommitStatus("wrong", base_url=gitlab.url).build_started(merge_request_build(None))
