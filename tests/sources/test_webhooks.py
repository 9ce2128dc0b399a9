"""Webhook parsing on GitHub's real deliveries (tests/fixtures) and GitLab's documented ones.

The hooks served by a real master over HTTP are tested in ``tests/e2e/test_webhooks.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest

from flowbot import GitHubHook, GitLabHook, JsonHook
from flowbot.errors import Forbidden, InvalidRequest
from flowbot.sources.webhooks import sign

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github-webhooks"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def github(event: str, body: bytes, secret: str | None = "s3cret", **extra: str) -> dict[str, str]:
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": "72d3162e", "Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return headers | extra


def test_github_push_of_a_new_branch_is_one_change_per_commit():
    body = fixture("push-with-new-branch.payload.json")
    delivery = GitHubHook(secret="s3cret").parse(github("push", body), body)
    (change,) = delivery.changes
    assert change.branch == "master"
    assert change.revision == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert change.repository == "https://github.com/Codertocat/Hello-World"
    assert change.project == "Codertocat/Hello-World"
    assert change.author == "Codertocat <21031067+Codertocat@users.noreply.github.com>"
    assert change.committer == change.author
    assert change.comments == "Initial commit"
    assert change.files == ("README.md",)
    assert change.revlink.endswith("/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246")
    assert change.when == 1557933565.0  # 2019-05-15T15:19:25Z


@pytest.mark.parametrize("name", ["push-payload.json", "push-with-installation.payload.json"])
def test_github_tag_deletions_build_nothing(name):
    body = fixture(name)
    delivery = GitHubHook(secret="s3cret").parse(github("push", body), body)
    assert delivery.changes == []
    assert delivery.note == "refs/tags/simple-tag was deleted; nothing to build"


def test_github_branch_deletion_and_ping_build_nothing():
    payload = json.loads(fixture("push-with-new-branch.payload.json"))
    payload |= {"before": payload["after"], "after": "0" * 40, "deleted": True, "commits": [], "head_commit": None}
    body = json.dumps(payload).encode()
    assert GitHubHook().parse(github("push", body, None), body).changes == []
    ping = fixture("ping-payload.json")
    assert GitHubHook(secret="s3cret").parse(github("ping", ping), ping).note == "pong"


def test_github_signatures_are_checked_when_there_is_a_secret():
    body = fixture("push-with-new-branch.payload.json")
    hook = GitHubHook(secret="s3cret")
    with pytest.raises(Forbidden, match="no X-Hub-Signature-256"):
        hook.parse(github("push", body, None), body)
    with pytest.raises(Forbidden, match="does not match"):
        hook.parse(github("push", body, "another secret"), body)
    with pytest.raises(Forbidden, match="does not match"):
        hook.parse(github("push", body), body.replace(b"Initial commit", b"Evil commit"))
    # Without a secret, anything signed or not is taken
    assert len(GitHubHook().parse(github("push", body, "whatever"), body).changes) == 1


def test_github_form_encoded_deliveries_and_distinct_commits():
    payload = json.loads(fixture("push-with-new-branch.payload.json"))
    second = payload["commits"][0] | {"id": "a" * 40, "distinct": False}
    payload["commits"].append(second)
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = github("push", body) | {"Content-Type": "application/x-www-form-urlencoded"}
    changes = GitHubHook(secret="s3cret").parse(headers, body).changes
    assert [c.revision for c in changes] == ["6113728f27ae82c7b1a177c8d03f9e96e0adf246"]


def test_github_bad_deliveries_say_what_is_wrong():
    hook = GitHubHook()
    with pytest.raises(InvalidRequest, match="no X-GitHub-Event header"):
        hook.parse({}, b"{}")
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        hook.parse({"X-GitHub-Event": "push"}, b"{not json")
    with pytest.raises(InvalidRequest, match="names no branch or tag"):
        hook.parse({"X-GitHub-Event": "push"}, b'{"ref": "refs/notes/x", "after": "1"}')
    assert hook.parse({"X-GitHub-Event": "issues"}, b"{}").note == "'issues' events start no builds"


GITLAB_PUSH = {
    "object_kind": "push",
    "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
    "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "ref": "refs/heads/master",
    "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "user_username": "jsmith",
    "project": {
        "name": "Diaspora",
        "web_url": "http://example.com/mike/diaspora",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "path_with_namespace": "mike/diaspora",
    },
    "repository": {"name": "Diaspora", "url": "git@example.com:mike/diaspora.git"},
    "commits": [
        {
            "id": "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
            "message": "Update Catalan translation to e38cb41.\n\nSee https://gitlab.com/gitlab-org/gitlab for more.",
            "timestamp": "2011-12-12T14:27:31+02:00",
            "url": "http://example.com/mike/diaspora/commit/b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
            "author": {"name": "Jordi Mallach", "email": "jordi@softcatala.org"},
            "added": ["CHANGELOG"],
            "modified": ["app/controller/application.rb"],
            "removed": [],
        },
        {
            "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "message": "fixed readme",
            "timestamp": "2012-01-03T23:36:29+02:00",
            "url": "http://example.com/mike/diaspora/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "author": {"name": "GitLab dev user", "email": "gitlabdev@dv6700.(none)"},
            "added": [],
            "modified": [],
            "removed": ["README"],
        },
    ],
    "total_commits_count": 2,
}


def test_gitlab_push_events_with_their_token():
    body = json.dumps(GITLAB_PUSH).encode()
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "t0ken"}
    changes = GitLabHook(token="t0ken").parse(headers, body).changes
    assert [c.revision for c in changes] == [c["id"] for c in GITLAB_PUSH["commits"]]
    first = changes[0]
    assert first.branch == "master" and first.repository == "http://example.com/mike/diaspora.git"
    assert first.project == "mike/diaspora" and first.author == "Jordi Mallach <jordi@softcatala.org>"
    assert first.files == ("CHANGELOG", "app/controller/application.rb")
    assert first.when == 1323692851.0
    assert changes[1].files == ("README",)

    with pytest.raises(Forbidden, match="no X-Gitlab-Token"):
        GitLabHook(token="t0ken").parse({"X-Gitlab-Event": "Push Hook"}, body)
    with pytest.raises(Forbidden, match="token is wrong"):
        GitLabHook(token="t0ken").parse({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}, body)
    deleted = json.dumps(GITLAB_PUSH | {"after": "0" * 40, "commits": []}).encode()
    assert GitLabHook().parse({"X-Gitlab-Event": "Push Hook"}, deleted).changes == []


def test_json_hook_takes_one_change_or_a_list_and_refuses_bad_fields():
    hook = JsonHook(token="tok")
    auth = {"Authorization": "Bearer tok"}
    one = hook.parse(auth, b'{"branch": "main", "revision": "abc", "files": ["a.py"], "when": 1700000000}')
    assert [(c.branch, c.revision, c.files, c.when) for c in one.changes] == [("main", "abc", ("a.py",), 1.7e9)]
    several = hook.parse(auth, b'[{"revision": "1"}, {"revision": "2", "author": "bob"}]')
    assert [c.revision for c in several.changes] == ["1", "2"]
    with pytest.raises(InvalidRequest, match=r"change 1: unknown field\(s\) \['colour'\]"):
        hook.parse(auth, b'[{"revision": "1"}, {"colour": "red"}]')
    with pytest.raises(InvalidRequest, match="files must be a list of strings"):
        hook.parse(auth, b'{"files": "a.py"}')
    with pytest.raises(Forbidden, match="no Authorization: Bearer token"):
        hook.parse({}, b"{}")
    with pytest.raises(Forbidden, match="token is wrong"):
        hook.parse({"Authorization": "Bearer nope"}, b"{}")


def test_each_hook_gives_its_changes_its_codebase():
    push = fixture("push-with-new-branch.payload.json")
    opened = fixture("pull_request.opened.payload.json")
    hook = GitHubHook(codebase="app")
    assert [c.codebase for c in hook.parse(github("push", push, None), push).changes] == ["app"]
    assert [c.codebase for c in hook.parse(github("pull_request", opened, None), opened).changes] == ["app"]
    gitlab = json.dumps(GITLAB_PUSH).encode()
    assert {c.codebase for c in GitLabHook(codebase="lib").parse({"X-Gitlab-Event": "Push Hook"}, gitlab).changes} == {
        "lib"
    }
    tool = JsonHook(codebase="docs").parse({}, b'[{"revision": "1"}, {"revision": "2", "codebase": "app"}]')
    assert [c.codebase for c in tool.changes] == ["docs", "app"]  # a change that names its own keeps it
    with pytest.raises(ValueError, match="codebase must be a string"):
        GitHubHook(codebase=None)
