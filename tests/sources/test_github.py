"""GitHubHook on GitHub's real pull request and check run deliveries (tests/fixtures).

What a running hook does with them (cancelling, building again, remembering) is tested in
``test_webhooks.py`` and, through a real master, in ``tests/e2e/test_pull_requests.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowbot import GitHubHook
from flowbot.errors import Forbidden, InvalidRequest
from flowbot.pull_requests import PullRequest, build_of_check_run, check_run_id
from flowbot.sources.webhooks import Rebuild, sign

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github-webhooks"
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
REPOSITORY = "https://github.com/Codertocat/Hello-World"


def delivery(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.payload.json").read_bytes())


def parse(hook: GitHubHook, event: str, payload: dict[str, Any] | bytes, secret: str | None = "s3cret"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": "d1", "Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return hook.parse(headers, body)


def comment(body: str, association: str = "MEMBER", *, on_pull_request: bool = True) -> dict[str, Any]:
    """An ``issue_comment`` delivery as GitHub documents it, on the repository of the real deliveries."""
    issue: dict[str, Any] = {"number": 2, "title": "Update the README with new information.", "state": "open"}
    if on_pull_request:
        issue["pull_request"] = {"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/2"}
    return {
        "action": "created",
        "issue": issue,
        "comment": {"body": body, "author_association": association, "user": {"login": "octocat"}},
        "repository": delivery("pull_request.opened")["repository"],
        "sender": {"login": "octocat"},
    }


@pytest.mark.parametrize("action", ["opened", "reopened", "synchronize"])
def test_a_pull_request_makes_one_change_for_its_head_on_its_ref(action):
    # The real fixtures, read as they come
    raw = (FIXTURES / f"pull_request.{action}.payload.json").read_bytes()
    (change,) = parse(GitHubHook(secret="s3cret"), "pull_request", raw).changes
    assert (change.branch, change.revision, change.category) == ("refs/pull/2/head", HEAD, "pull_request")
    assert change.repository == REPOSITORY and change.project == "Codertocat/Hello-World"
    assert change.author == "Codertocat" and change.comments == "Update the README with new information."
    assert change.revlink == "https://github.com/Codertocat/Hello-World/pull/2"
    assert change.properties == {
        "event": "pull_request",
        "action": action,
        "pr_number": 2,
        "pr_title": "Update the README with new information.",
        "pr_url": "https://github.com/Codertocat/Hello-World/pull/2",
        "pr_base_branch": "master",
        "pr_head_branch": "changes",
        "pr_head_repository": "Codertocat/Hello-World",
        "pr_author": "Codertocat",
        "pr_fork": False,
    }
    assert PullRequest.of(change.repository, change.properties).key == f"{REPOSITORY}#2"


def test_the_merge_ref_when_the_hook_builds_merges():
    (change,) = parse(GitHubHook(secret="s3cret", merge=True), "pull_request", delivery("pull_request.opened")).changes
    assert (change.branch, change.revision) == ("refs/pull/2/merge", HEAD)  # statuses still go to the head


def test_a_pull_request_from_a_fork_says_so():
    payload = delivery("pull_request.opened")
    payload["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    (change,) = parse(GitHubHook(secret="s3cret"), "pull_request", payload).changes
    assert change.properties["pr_fork"] is True
    assert change.properties["pr_head_repository"] == "mallory/Hello-World"
    assert change.repository == REPOSITORY  # built from the base repository, where GitHub publishes the ref
    # A fork deleted since has no head repository at all
    payload["pull_request"]["head"]["repo"] = None
    (change,) = parse(GitHubHook(secret="s3cret"), "pull_request", payload).changes
    assert (change.properties["pr_fork"], change.properties["pr_head_repository"]) == (True, "")


def test_drafts_are_skipped_unless_asked_for_and_built_when_ready():
    payload = delivery("pull_request.opened")
    payload["pull_request"]["draft"] = True
    skipped = parse(GitHubHook(secret="s3cret"), "pull_request", payload)
    assert skipped.changes == [] and "#2 is a draft" in skipped.note
    assert len(parse(GitHubHook(secret="s3cret", drafts=True), "pull_request", payload).changes) == 1
    ready = delivery("pull_request.opened") | {"action": "ready_for_review"}
    assert [c.revision for c in parse(GitHubHook(secret="s3cret"), "pull_request", ready).changes] == [HEAD]


def test_closed_cancels_and_other_actions_build_nothing():
    closed = parse(GitHubHook(secret="s3cret"), "pull_request", delivery("pull_request.closed"))
    assert closed.changes == [] and closed.closed == PullRequest(
        REPOSITORY,
        2,
        "Update the README with new information.",
        "https://github.com/Codertocat/Hello-World/pull/2",
        "master",
        "changes",
        "Codertocat/Hello-World",
        "Codertocat",
        False,
    )
    assigned_delivery = delivery("pull_request.opened") | {"action": "assigned"}
    assigned = parse(GitHubHook(secret="s3cret"), "pull_request", assigned_delivery)
    assert (assigned.changes, assigned.note) == ([], "'assigned' pull request events start no builds")
    # A new base branch builds again; other edits (the title) do not
    edited = delivery("pull_request.opened") | {"action": "edited"}
    assert parse(GitHubHook(), "pull_request", edited | {"changes": {"title": {"from": "x"}}}, None).changes == []
    rebased = parse(GitHubHook(), "pull_request", edited | {"changes": {"base": {"ref": {"from": "dev"}}}}, None)
    assert len(rebased.changes) == 1


def test_a_label_builds_again_only_when_it_is_the_hooks():
    labeled = delivery("pull_request.opened") | {"action": "labeled", "label": {"name": "ci:retest"}}
    assert parse(GitHubHook(secret="s3cret"), "pull_request", labeled).changes == []
    (change,) = parse(GitHubHook(secret="s3cret", retest_label="ci:retest"), "pull_request", labeled).changes
    assert change.properties["action"] == "labeled" and change.revision == HEAD
    other = labeled | {"label": {"name": "bug"}}
    assert parse(GitHubHook(secret="s3cret", retest_label="ci:retest"), "pull_request", other).changes == []


def test_a_retest_comment_counts_from_members_only():
    hook = GitHubHook(secret="s3cret")
    member = parse(hook, "issue_comment", comment("/retest\nthe runner was flaky", "MEMBER"))
    assert member.retest == PullRequest(REPOSITORY, 2) and member.changes == []
    assert member.note == "octocat asked for #2 to be built again"
    stranger = parse(hook, "issue_comment", comment("/retest", "NONE"))
    assert stranger.retest is None
    assert stranger.note == ("octocat (NONE) may not build pull request #2 again; only COLLABORATOR, MEMBER, OWNER may")
    assert parse(hook, "issue_comment", comment("looks good to me")).retest is None
    on_an_issue = parse(hook, "issue_comment", comment("/retest", on_pull_request=False))
    assert "is an issue, not a pull request" in on_an_issue.note
    # Contributors too, when the hook says so; and no re-run by comment at all with retest=None
    contributors = GitHubHook(secret="s3cret", retest="/ci again", retest_from=["owner", "contributor"])
    assert parse(contributors, "issue_comment", comment("/ci again", "CONTRIBUTOR")).retest is not None
    assert parse(GitHubHook(secret="s3cret", retest=None), "issue_comment", comment("/retest")).retest is None


def test_a_check_run_rerequest_names_flowbots_build_only():
    payload = delivery("check_run.rerequested")
    # The real delivery is of another app's check run: nothing to run again
    foreign = parse(GitHubHook(secret="s3cret"), "check_run", payload)
    assert foreign.rebuild is None and "not made by flowbot" in foreign.note
    payload["check_run"]["external_id"] = check_run_id(42)
    ours = parse(GitHubHook(secret="s3cret"), "check_run", payload)
    assert ours.rebuild == Rebuild(42, "d6fde92930d4715a2b49857d24b940956b26d2d3", "octocat")
    assert build_of_check_run("flowbot-build-x") is None and build_of_check_run("") is None


def test_pull_request_deliveries_it_cannot_read_are_refused_with_the_reason():
    hook = GitHubHook()
    broken = delivery("pull_request.opened")
    del broken["pull_request"]["head"]["sha"]
    with pytest.raises(InvalidRequest, match=r"the payload has no pull_request\.head\.sha"):
        parse(hook, "pull_request", broken, None)
    wrong = delivery("pull_request.opened")
    wrong["number"] = "two"
    with pytest.raises(InvalidRequest, match="number must be a number, not str"):
        parse(hook, "pull_request", wrong, None)
    with pytest.raises(InvalidRequest, match="the payload has no action"):
        parse(hook, "pull_request", {"number": 2}, None)
    with pytest.raises(InvalidRequest, match=r"pull_request\.base\.ref must be a string, not list"):
        parse(hook, "pull_request", _with(delivery("pull_request.opened"), ["pull_request", "base", "ref"], []), None)
    with pytest.raises(InvalidRequest, match=r"the payload has no repository\.html_url"):
        parse(hook, "issue_comment", comment("/retest") | {"repository": None}, None)
    with pytest.raises(InvalidRequest, match="the payload must be a JSON object"):
        parse(hook, "pull_request", b"[]", None)
    with pytest.raises(Forbidden, match="does not match"):
        parse(GitHubHook(secret="s3cret"), "pull_request", delivery("pull_request.opened"), "guess")


def _with(payload: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    here = payload
    for key in path[:-1]:
        here = here[key]
    here[path[-1]] = value
    return payload
