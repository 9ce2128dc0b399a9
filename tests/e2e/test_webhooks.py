"""Webhooks served by a real master over real HTTP: GitHub, GitLab and plain JSON deliveries."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from flowbot.sources.webhooks import sign

from ..sources.test_webhooks import GITLAB_PUSH
from ..support import wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github-webhooks"

PIPELINE = """\
from flowbot import AnyBranchScheduler, Builder, GitHubHook, GitLabHook, JsonHook, Pipeline, Shell, Worker

pipeline = Pipeline(
    workers=[Worker("w1", secret="never-connects")],
    sources=[GitHubHook(secret="s3cret"), GitLabHook(token="t0ken"), JsonHook(token="tok")],
    schedulers=[AnyBranchScheduler("all", builders=["unit"])],
    builders=[Builder("unit", workers=["w1"], steps=[Shell("true")])],
)
"""


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_webhook_deliveries_make_changes_and_bad_signatures_are_refused(master_factory):
    master = master_factory(PIPELINE)
    hooks = f"{master.url}/hooks"

    # GitHub's ping is answered and makes nothing
    ping = (FIXTURES / "ping-payload.json").read_bytes()
    github = {"Content-Type": "application/json", "X-GitHub-Delivery": "1"}
    status, reply = post(
        f"{hooks}/github", ping, github | {"X-GitHub-Event": "ping", "X-Hub-Signature-256": sign("s3cret", ping)}
    )
    assert (status, reply) == (200, {"change_ids": [], "note": "pong"})

    # A signed push makes one change per commit, and a build request for it
    push = (FIXTURES / "push-with-new-branch.payload.json").read_bytes()
    signed = github | {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign("s3cret", push)}
    status, reply = post(f"{hooks}/github", push, signed)
    assert status == 200 and len(reply["change_ids"]) == 1
    (request,) = master.client.buildrequests(pending=True)
    assert (request["builder"], request["branch"]) == ("unit", "master")
    assert request["revision"] == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"

    # A forged or unsigned push is refused, and the master says so in its log
    forged = github | {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign("guess", push)}
    status, reply = post(f"{hooks}/github", push, forged)
    assert status == 403 and "does not match" in reply["error"]
    status, reply = post(f"{hooks}/github", push, github | {"X-GitHub-Event": "push"})
    assert status == 403 and "no X-Hub-Signature-256" in reply["error"]
    wait_for(lambda: "webhook github refused a delivery from 127.0.0.1" in master.log(), 5, "the refusal logged")

    # A tag deletion builds nothing
    deletion = (FIXTURES / "push-payload.json").read_bytes()
    status, reply = post(
        f"{hooks}/github",
        deletion,
        github | {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign("s3cret", deletion)},
    )
    assert (status, reply["change_ids"]) == (200, [])

    # GitLab pushes with their token, JSON changes with theirs
    gitlab = json.dumps(GITLAB_PUSH).encode()
    gitlab_headers = {"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook"}
    status, reply = post(f"{hooks}/gitlab", gitlab, gitlab_headers | {"X-Gitlab-Token": "t0ken"})
    assert status == 200 and len(reply["change_ids"]) == 2
    status, _ = post(f"{hooks}/gitlab", gitlab, gitlab_headers | {"X-Gitlab-Token": "nope"})
    assert status == 403
    changes = json.dumps([{"branch": "dev", "revision": "r1"}, {"branch": "dev", "revision": "r2"}]).encode()
    status, reply = post(
        f"{hooks}/changes", changes, {"Content-Type": "application/json", "Authorization": "Bearer tok"}
    )
    assert status == 200 and len(reply["change_ids"]) == 2
    status, reply = post(
        f"{hooks}/changes", b'{"colour": "red"}', {"Content-Type": "application/json", "Authorization": "Bearer tok"}
    )
    assert status == 400 and reply["error"] == "unknown field(s) ['colour']"

    # Every accepted commit got a build request (older ones on a branch collapse into the newest)
    requests = master.client.request("GET", "/api/buildrequests")["buildrequests"]
    assert [r["revision"] for r in reversed(requests)] == [
        "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        *(c["id"] for c in GITLAB_PUSH["commits"]),
        "r1",
        "r2",
    ]

    # An unknown hook is 404
    status, reply = post(f"{hooks}/bitbucket", b"{}", {})
    assert status == 404 and reply["error"] == "no webhook named 'bitbucket' is running"


def test_a_delivery_sent_again_makes_no_change_twice_even_after_a_restart(master_factory):
    # Given a master that took a GitHub push, a GitLab push and a tool's JSON changes, each with its id
    master = master_factory(PIPELINE)
    push = (FIXTURES / "push-with-new-branch.payload.json").read_bytes()
    github = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "6bd2d4d0-cfd6-11f0-8c1b-1d2b0ad1e0a1",
        "X-Hub-Signature-256": sign("s3cret", push),
    }
    gitlab = json.dumps(GITLAB_PUSH).encode()
    gitlab_headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Token": "t0ken",
        "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e",
    }
    tool = json.dumps([{"branch": "dev", "revision": "r1"}, {"branch": "dev", "revision": "r2"}]).encode()
    tool_headers = {"Content-Type": "application/json", "Authorization": "Bearer tok", "Idempotency-Key": "job-7"}
    firsts = [
        post(f"{master.url}/hooks/github", push, github),
        post(f"{master.url}/hooks/gitlab", gitlab, gitlab_headers),
        post(f"{master.url}/hooks/changes", tool, tool_headers),
    ]
    assert [(status, len(reply["change_ids"])) for status, reply in firsts] == [(200, 1), (200, 2), (200, 2)]

    # When each is delivered again, after the master was killed and started again too
    master.kill()
    again = master_factory(PIPELINE, http_port=master.http_port, zmq_port=master.zmq_port)
    repeats = [
        post(f"{again.url}/hooks/github", push, github),
        post(f"{again.url}/hooks/gitlab", gitlab, gitlab_headers),
        post(f"{again.url}/hooks/changes", tool, tool_headers),
    ]

    # Then each is answered, says it was received before, and makes no change
    for status, reply in repeats:
        assert status == 200 and reply["change_ids"] == [], reply
        assert "was received before" in reply["note"]
    assert len(again.client.request("GET", "/api/changes")["changes"]) == 5

    # While a new delivery of the same push (another id: a new event) is taken
    status, reply = post(f"{again.url}/hooks/github", push, github | {"X-GitHub-Delivery": "another"})
    assert status == 200 and len(reply["change_ids"]) == 1


PROTECTED = """\
from flowbot import AnyBranchScheduler, Auth, Builder, GitHubHook, JsonHook, Pipeline, Shell, Worker

pipeline = Pipeline(
    workers=[Worker("w1", secret="never-connects")],
    sources=[GitHubHook(secret="s3cret"), JsonHook(token="tok")],
    schedulers=[AnyBranchScheduler("all", builders=["unit"])],
    builders=[Builder("unit", workers=["w1"], steps=[Shell("true")])],
    auth=Auth(users={"alice": "wonderland"}, tokens={"ci": "api-token"}, read="users"),
)
"""


def test_webhooks_need_their_own_secret_not_the_masters_credentials(master_factory):
    # Given a master whose API needs credentials even to read
    master = master_factory(PROTECTED, wait=False)
    wait_for(lambda: _answers(master.url), 30, "the master")
    assert post(f"{master.url}/api/changes", b"{}", {"Content-Type": "application/json"})[0] == 401

    # GitHub's signed delivery is taken without any master credentials, as is a JSON hook's token
    push = (FIXTURES / "push-with-new-branch.payload.json").read_bytes()
    github = {"Content-Type": "application/json", "X-GitHub-Delivery": "1", "X-GitHub-Event": "push"}
    status, reply = post(f"{master.url}/hooks/github", push, github | {"X-Hub-Signature-256": sign("s3cret", push)})
    assert status == 200 and len(reply["change_ids"]) == 1
    change = json.dumps({"branch": "dev", "revision": "r1"}).encode()
    json_hook = {"Content-Type": "application/json", "Authorization": "Bearer tok"}
    assert post(f"{master.url}/hooks/changes", change, json_hook)[0] == 200

    # A wrong signature is still refused by the hook (403), and so is a browser page of another site
    forged = github | {"X-Hub-Signature-256": sign("guess", push)}
    status, reply = post(f"{master.url}/hooks/github", push, forged)
    assert status == 403 and "does not match" in reply["error"]
    cross_site = json_hook | {"Origin": "https://evil.example"}
    assert post(f"{master.url}/hooks/changes", change, cross_site)[0] == 403

    # The master's own API stays closed to those without credentials
    status, _ = post(f"{master.url}/api/changes", change, {"Content-Type": "application/json"})
    assert status == 401


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/api/", timeout=5).close()
    except urllib.error.HTTPError:
        return True  # it answers, if only to say it wants credentials
    except OSError:
        return False
    return True


def test_pull_request_deliveries_build_their_head_and_closing_withdraws_it(master_factory):
    # Given a master whose worker never connects, so every request stays pending
    master = master_factory(PIPELINE)
    hooks = f"{master.url}/hooks"

    def github(name: str, payload: bytes | None = None, event: str = "pull_request", **headers: str):
        body = payload if payload is not None else (FIXTURES / f"{name}.payload.json").read_bytes()
        signed = {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": name}
        return post(f"{hooks}/github", body, signed | {"X-Hub-Signature-256": sign("s3cret", body)} | headers)

    # When GitHub's real opened delivery arrives, signed: one request for the head, on the pull request's ref
    status, reply = github("pull_request.opened")
    assert status == 200 and len(reply["change_ids"]) == 1
    (request,) = master.client.buildrequests(pending=True)
    assert (request["branch"], request["revision"]) == ("refs/pull/2/head", "ec26c3e57ca3a959ca5aad62de7213c562f8c821")
    (change,) = master.client.request("GET", "/api/changes")["changes"]
    assert change["category"] == "pull_request" and change["properties"]["pr_number"] == 2

    # A forged one is refused, one it cannot read says why (400), an action it does not build says so
    opened = (FIXTURES / "pull_request.opened.payload.json").read_bytes()
    status, reply = github("forged", opened, **{"X-Hub-Signature-256": sign("guess", opened)})
    assert status == 403 and "does not match" in reply["error"]
    broken = json.loads(opened)
    del broken["pull_request"]["head"]
    status, reply = github("broken", json.dumps(broken).encode())
    assert (status, reply["error"]) == (400, "the payload has no pull_request.head.ref")
    status, reply = github("assigned", json.dumps(json.loads(opened) | {"action": "assigned"}).encode())
    assert (status, reply) == (200, {"change_ids": [], "note": "'assigned' pull request events start no builds"})

    # A merge request, as GitLab documents the delivery, makes its own
    merge_request = (FIXTURES.parent / "gitlab-webhooks" / "merge_request.open.json").read_bytes()
    gitlab = {"Content-Type": "application/json", "X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": "t0ken"}
    status, reply = post(f"{hooks}/gitlab", merge_request, gitlab)
    assert status == 200 and len(reply["change_ids"]) == 1
    assert len(master.client.buildrequests(pending=True)) == 2

    # When the pull request is closed, its request is withdrawn; the merge request's stays
    status, reply = github("pull_request.closed")
    assert status == 200 and reply["note"].startswith("pull request #2 closed: 1 pending request(s) cancelled")
    (left,) = master.client.buildrequests(pending=True)
    assert left["branch"] == "refs/merge-requests/1/head"
