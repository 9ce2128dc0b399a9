"""Pull requests end to end: GitHub's real deliveries, signed, to a real master whose real worker
checks out the pull request's ref from a real repository that publishes ``refs/pull/N/head``.

The pipeline is the README's: pushes to the base branch and every pull request into it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from flowbot.sources.webhooks import sign

from ..gitrepos import GitRepo, Hosting
from ..support import finished_builds, step_log
from .test_git import PROJECT
from .test_webhooks import post

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github-webhooks"

PIPELINE = """\
from flowbot import (AnyBranchScheduler, Builder, ChangeFilter, Git, GitHubHook, Pipeline, Shell,
                     SingleBranchScheduler, Worker)

REPO = {repo!r}
pipeline = Pipeline(
    workers=[Worker("w1", secret="s1")],
    sources=[GitHubHook(secret="s3cret", merge={merge!r})],
    schedulers=[
        SingleBranchScheduler("master", branch="master", builders=["test"]),
        AnyBranchScheduler("pull-requests", builders=["test"],
                           change_filter=ChangeFilter(pull_requests=True, base_branch="master")),
    ],
    builders=[Builder("test", workers=["w1"], collapse_requests=False, steps=[
        Git(REPO),
        Shell([{python!r}, "-m", "unittest", "-v"], name="test"),
    ])],
)
"""

#: A pull request that breaks the calculator's test.
BREAKING = {"calc.py": "def add(a, b):\n    return a * b\n"}


def deliver(master, name: str, head: str | None = None, **changes: Any) -> dict[str, Any]:
    """GitHub's real delivery ``name``, its head rewritten to a commit of the test's repository, signed."""
    payload = json.loads((FIXTURES / f"{name}.payload.json").read_bytes())
    if head is not None:
        payload["pull_request"]["head"]["sha"] = head
    for path, value in changes.items():
        *inside, last = path.split("__")
        here = payload
        for key in inside:
            here = here[key]
        here[last] = value
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": name.split(".")[0],
        "X-GitHub-Delivery": f"{name}-{head}-{len(changes)}",
        "X-Hub-Signature-256": sign("s3cret", body),
    }
    status, reply = post(f"{master.url}/hooks/github", body, headers)
    assert status == 200, reply
    return reply


def hosting(tmp_path: Path, feature: dict[str, str | None]) -> Hosting:
    """A server whose ``master`` holds the calculator, and pull request #2 (the fixtures') proposing ``feature``."""
    clone = GitRepo(tmp_path / "clone")
    clone.commit("A calculator with tests", PROJECT)
    clone.git("branch", "-q", "-m", "master")
    clone.checkout("main", new=True)  # Hosting pushes main; the fixtures' base branch is master
    server = Hosting(tmp_path / "server.git", clone, 2, feature)
    clone.git("push", "-q", server.server.url, "main:master")
    return server


def test_every_pull_request_into_the_base_branch_is_checked_out_at_its_head_and_built(
    tmp_path, master_factory, worker_factory
):
    # Given a server with pull request #2, which breaks the tests, and the README's pipeline
    server = hosting(tmp_path, BREAKING)
    master = master_factory(PIPELINE.format(repo=server.server.url, merge=False, python=sys.executable))
    worker_factory(master, "w1", "s1")

    # When GitHub says it was opened, and that another pull request into "dev" was too
    deliver(master, "pull_request.opened", server.head)
    assert deliver(master, "pull_request.opened", "f" * 40, pull_request__base__ref="dev")["change_ids"]

    # Then the pull request into master is built at its head, and fails as its code does
    (build,) = finished_builds(master.client, 1)
    assert (build["branch"], build["revision"], build["result"]) == ("refs/pull/2/head", server.head, "FAILURE")
    details = master.client.request("GET", f"/api/builds/{build['id']}")
    assert details["properties"]["got_revision"][0] == server.head
    assert details["properties"]["pr_number"][0] == 2 and details["properties"]["pr_base_branch"][0] == "master"
    assert "refs/pull/2/head" in step_log(master.client, build["id"], 0)
    assert "FAILED (failures=1)" in step_log(master.client, build["id"], 1)
    assert len(master.client.request("GET", "/api/buildrequests")["buildrequests"]) == 1  # none for "dev"


def test_the_merge_is_built_when_the_hook_asks_and_a_force_pushed_head_fails_its_old_build(
    tmp_path, master_factory, worker_factory
):
    # Given a hook that builds merges, and a pull request adding a module, whose head is then
    # force-pushed (its old commit gone) before any worker connects
    server = hosting(tmp_path, {"extra.py": "X = 1\n"})
    master = master_factory(PIPELINE.format(repo=server.server.url, merge=True, python=sys.executable))
    old = server.head
    deliver(master, "pull_request.opened", old)
    new = server.force_push()
    deliver(master, "pull_request.synchronize", new)

    # When a worker comes
    worker = worker_factory(master, "w1", "s1")
    first, second = finished_builds(master.client, 2)

    # Then the old head's build fails saying why, and the new head's builds its merge into master
    assert (first["revision"], first["result"]) == (old, "FAILURE")
    assert f"refs/pull/2/merge of {server.server.url} merges {new} now, not {old}" in step_log(
        master.client, first["id"], 0
    )
    assert (second["branch"], second["revision"], second["result"]) == ("refs/pull/2/merge", new, "SUCCESS")
    details = master.client.request("GET", f"/api/builds/{second['id']}")
    assert details["properties"]["got_revision"][0] == server.merge
    checkout = worker.basedir / "test" / "build"
    assert (checkout / "extra.py").exists() and (checkout / "main.txt").exists()  # both sides of the merge
