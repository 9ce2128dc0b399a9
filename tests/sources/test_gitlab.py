"""GitLabHook on merge request deliveries written after GitLab's documented payload (tests/fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowbot import GitLabHook
from flowbot.errors import Forbidden, InvalidRequest
from flowbot.pull_requests import PullRequest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gitlab-webhooks"
HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
REPOSITORY = "http://example.com/gitlabhq/gitlab-test.git"


def merge_request(action: str = "open", **attributes: Any) -> dict[str, Any]:
    payload = json.loads((FIXTURES / "merge_request.open.json").read_bytes())
    payload["object_attributes"] |= {"action": action, **attributes}
    return payload


def parse(hook: GitLabHook, payload: dict[str, Any], token: str | None = "t0ken"):
    headers = {"X-Gitlab-Event": "Merge Request Hook", "Content-Type": "application/json"}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return hook.parse(headers, json.dumps(payload).encode())


def test_an_opened_merge_request_makes_one_change_for_its_last_commit():
    (change,) = parse(GitLabHook(token="t0ken"), merge_request()).changes
    assert (change.branch, change.revision, change.category) == ("refs/merge-requests/1/head", HEAD, "pull_request")
    assert (change.repository, change.project) == (REPOSITORY, "gitlabhq/gitlab-test")
    assert change.properties == {
        "event": "merge_request",
        "action": "open",
        "pr_number": 1,
        "pr_title": "MS-Viewport",
        "pr_url": "http://example.com/diaspora/merge_requests/1",
        "pr_base_branch": "master",
        "pr_head_branch": "ms-viewport",
        "pr_head_repository": "awesome_space/awesome_project",
        "pr_author": "root",
        "pr_fork": False,
    }
    assert change.when == 1386091414.0  # 2013-12-03T17:23:34Z
    (merged,) = parse(GitLabHook(token="t0ken", merge=True), merge_request("reopen")).changes
    assert (merged.branch, merged.revision) == ("refs/merge-requests/1/merge", HEAD)


def test_updates_build_only_with_new_commits_a_ready_draft_or_the_retest_label():
    hook = GitLabHook(token="t0ken", retest_label="retest")
    assert parse(hook, merge_request("update")).changes == []  # a new title, say
    pushed = merge_request("update", oldrev="0b4bc9a49b562e85de7cc9e834518ea6828729b9")
    assert [c.revision for c in parse(hook, pushed).changes] == [HEAD]
    ready = merge_request("update") | {"changes": {"draft": {"previous": True, "current": False}}}
    assert len(parse(hook, ready).changes) == 1
    label = {"title": "retest"}
    labelled = merge_request("update") | {"changes": {"labels": {"previous": [], "current": [label]}}}
    assert len(parse(hook, labelled).changes) == 1
    kept = merge_request("update") | {"changes": {"labels": {"previous": [label], "current": [label]}}}
    assert parse(hook, kept).changes == []
    approved = parse(hook, merge_request("approved"))
    assert (approved.changes, approved.note) == ([], "'approved' merge request events start no builds")


def test_drafts_forks_and_closing():
    draft = parse(GitLabHook(), merge_request(draft=True), None)
    assert draft.changes == [] and "!1 is a draft" in draft.note
    assert len(parse(GitLabHook(drafts=True), merge_request(draft=True), None).changes) == 1
    (fork,) = parse(GitLabHook(), merge_request(source_project_id=15), None).changes
    assert fork.properties["pr_fork"] is True
    for action in ("close", "merge"):
        delivery = parse(GitLabHook(), merge_request(action), None)
        assert delivery.changes == [] and delivery.closed is not None
        assert (delivery.closed.repository, delivery.closed.number) == (REPOSITORY, 1)
        assert isinstance(delivery.closed, PullRequest)


def test_merge_requests_it_cannot_read_are_refused_with_the_reason():
    broken = merge_request()
    del broken["object_attributes"]["last_commit"]
    with pytest.raises(InvalidRequest, match=r"the payload has no object_attributes\.last_commit\.id"):
        parse(GitLabHook(), broken, None)
    with pytest.raises(InvalidRequest, match=r"object_attributes\.iid must be a number, not str"):
        parse(GitLabHook(), merge_request(iid="1"), None)
    with pytest.raises(InvalidRequest, match=r"the payload has no project\.git_http_url"):
        parse(GitLabHook(), merge_request() | {"project": {}}, None)
    with pytest.raises(Forbidden, match="token is wrong"):
        parse(GitLabHook(token="t0ken"), merge_request(), "guess")
