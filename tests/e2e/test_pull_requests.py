"""Pull requests end to end: GitHub's real deliveries, signed, to a real master whose real worker
checks out the pull request's ref from a real repository that publishes ``refs/pull/N/head``.

The pipeline is the README's: pushes to the base branch and every pull request into it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from flowbot.sources.webhooks import sign

from ..gitrepos import GitRepo, Hosting
from ..hosting_api import CheckRun, HostingAPI
from ..support import finished_builds, running_build, step_log, wait_for
from ..test_readme import README
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
    builders=[Builder("test", workers=["w1"], collapse_requests=False, cancel_superseded={cancel!r}, steps=[
        Git(REPO),
        Shell([{python!r}, "-m", "unittest", "-v"], name="test"),
    ])],
)
"""

#: A pull request that breaks the calculator's test.
BREAKING = {"calc.py": "def add(a, b):\n    return a * b\n"}


def deliver(master, name: str, head: str | None = None, *, secret: str = "s3cret", **changes: Any) -> dict[str, Any]:
    """GitHub's real delivery ``name``, signed with ``secret``, its head rewritten to a commit of the
    test's repository, and each ``a__b=value`` of ``changes`` set at ``payload["a"]["b"]``."""
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
        "X-Hub-Signature-256": sign(secret, body),
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
    master = master_factory(PIPELINE.format(repo=server.server.url, merge=False, cancel=None, python=sys.executable))
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
    # force-pushed (its old commit gone) before any worker connects, to a builder that builds
    # superseded heads too
    server = hosting(tmp_path, {"extra.py": "X = 1\n"})
    master = master_factory(PIPELINE.format(repo=server.server.url, merge=True, cancel=False, python=sys.executable))
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


CHECKS_PIPELINE = """\
from flowbot import (AnyBranchScheduler, Builder, ChangeFilter, Git, GitHubChecks, GitHubHook, GitLabCommitStatus,
                     GitLabHook, Interpolate, Pipeline, SecretsInDirectory, Shell, Worker)

pipeline = Pipeline(
    workers=[Worker("w1", secret="s1")],
    sources=[GitHubHook(secret="s3cret"), GitLabHook(token="t0ken")],
    schedulers=[AnyBranchScheduler("pull-requests", builders=["test"], change_filter=ChangeFilter(pull_requests=True))],
    builders=[Builder("test", workers=["w1"], collapse_requests=False, steps=[
        Git({repo!r}),
        Shell([{python!r}, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=report.xml"],
              name="test", junit="report.xml"),
    ])],
    reporters=[
        GitHubChecks(app_id=1234, private_key=Interpolate("%(secret:github_app_key)s"), installation_id=99,
                     base_url={api!r}),
        GitLabCommitStatus(Interpolate("%(secret:gitlab_token)s"), base_url={api!r}),
    ],
    secrets=[SecretsInDirectory({secrets!r})],
    url="https://ci.example.com/",
)
"""


def test_a_pull_requests_build_is_a_check_run_with_its_failing_test_annotated_and_github_reruns_it(
    tmp_path, master_factory, worker_factory
):
    # Given a stand-in for GitHub's and GitLab's APIs, which knows the App's public key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    api = HostingAPI(app_id=1234, public_key=public, token="glpat-1")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "github_app_key").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    (secrets / "gitlab_token").write_text("glpat-1\n")
    try:
        # And a master reporting to it, and a pull request that breaks the calculator's test
        server = hosting(tmp_path, BREAKING)
        pipeline = CHECKS_PIPELINE.format(
            repo=server.server.url, python=sys.executable, api=api.url, secrets=str(secrets)
        )
        master = master_factory(pipeline)
        worker_factory(master, "w1", "s1")

        # When GitHub says the pull request was opened
        deliver(master, "pull_request.opened", server.head)
        (build,) = finished_builds(master.client, 1)

        # Then its head got a check run, in progress then failed, with the failing test annotated
        def completed() -> list[CheckRun]:
            return [r for r in api.check_runs.values() if r.fields.get("status") == "completed"]

        (run,) = wait_for(completed, 20, "the completed check run")
        assert api.refused == []  # every JWT, token and field was as GitHub wants them
        assert len(api.requests_to("access_tokens")) == 1
        assert api.requests_to("check-runs$")[0]["json"]["status"] == "in_progress"
        assert (build["result"], run.fields["conclusion"]) == ("FAILURE", "failure")
        assert run.fields["head_sha"] == server.head and run.fields["name"] == "flowbot/test"
        assert run.fields["external_id"] == f"flowbot-build-{build['id']}"
        assert run.fields["details_url"] == f"https://ci.example.com/#/builds/{build['id']}"
        assert run.fields["output"]["title"] == "FAILURE: 1 failing test"
        (annotation,) = run.annotations
        assert (annotation["path"], annotation["start_line"], annotation["annotation_level"]) == (
            "test_calc.py",
            8,  # the assertion's line
            "failure",
        )
        assert annotation["title"] == "test_calc.AddTest.test_add" and "6 != 5" in annotation["message"]

        # When someone asks GitHub to re-run the check run, the build runs again and reports again
        deliver(
            master,
            "check_run.rerequested",
            check_run__external_id=run.fields["external_id"],
            check_run__head_sha=server.head,
        )
        again = finished_builds(master.client, 2)[1]
        assert (again["revision"], again["result"]) == (server.head, "FAILURE")
        wait_for(lambda: len(completed()) == 2, 20, "the second check run")
        assert completed()[1].fields["external_id"] == f"flowbot-build-{again['id']}"

        # And a merge request's build reports to GitLab, on its head commit
        merge_request = json.loads((FIXTURES.parent / "gitlab-webhooks" / "merge_request.open.json").read_bytes())
        merge_request["object_attributes"]["last_commit"]["id"] = server.head
        headers = {
            "Content-Type": "application/json",
            "X-Gitlab-Event": "Merge Request Hook",
            "X-Gitlab-Token": "t0ken",
        }
        assert post(f"{master.url}/hooks/gitlab", json.dumps(merge_request).encode(), headers)[0] == 200
        finished_builds(master.client, 3)

        def gitlab() -> list[dict[str, Any]]:  # (the GitHub builds' statuses went to the stand-in too)
            return [s for s in api.statuses if s["project"] == "gitlabhq%2Fgitlab-test"]

        wait_for(lambda: len(gitlab()) == 2, 20, "GitLab's two statuses")
        assert [(s["project"], s["sha"], s["state"], s["ref"]) for s in gitlab()] == [
            ("gitlabhq%2Fgitlab-test", server.head, "running", "ms-viewport"),
            ("gitlabhq%2Fgitlab-test", server.head, "failed", "ms-viewport"),
        ]
        assert "BEGIN PRIVATE KEY" not in master.log() and "glpat-1" not in master.log()
    finally:
        api.close()


#: The README's pipeline for pull requests, as it is written there.
README_PIPELINE = re.search(r"^### Pull requests\n.*?^```python\n(.*?)^```", README.read_text(), re.M | re.S).group(1)

#: A test that never ends.
HANGING = "import time\n\n\ndef test_wait():\n    time.sleep(600)\n"


def test_the_readmes_pipeline_cancels_a_superseded_head_and_annotates_the_new_heads_failing_test(
    tmp_path, master_factory, worker_factory
):
    # Given a stand-in for GitHub's API, which knows the App's public key, and the private key
    # where the README's pipeline reads it
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    api = HostingAPI(app_id=123456, public_key=public)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "github_app_key").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    try:
        # And a repository whose pull request #2 into main adds a test that never ends
        clone = GitRepo(tmp_path / "clone")
        clone.commit("A calculator with tests", PROJECT)
        server = Hosting(tmp_path / "server.git", clone, 2, {"test_wait.py": HANGING})

        # And the README's pipeline as written, but for where the repository, the secrets and GitHub are
        places = {
            '"https://github.com/octo/widgets.git"': repr(server.server.url),
            '"/etc/flowbot/secrets"': repr(str(secrets)),
            "GitHubChecks(": f"GitHubChecks(base_url={api.url!r}, ",
        }
        pipeline = README_PIPELINE
        for written, here in places.items():
            assert pipeline.count(written) == 1, written
            pipeline = pipeline.replace(written, here)
        master = master_factory(pipeline)
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # where pytest is
        worker_factory(master, "w1", "a", env={"PATH": path})

        # When GitHub says the pull request was opened, and its build runs the test that never ends
        old = server.head
        hook = {"secret": "from-the-webhook-settings", "pull_request__base__ref": "main"}
        deliver(master, "pull_request.opened", old, **hook)
        build = running_build(master.client, "test", timeout=60)
        wait_for(lambda: master.client.request("GET", f"/api/builds/{build['id']}")["current_step"] == 1, 60, "tests")
        # And someone asks for it to run again (which waits: the worker is busy)
        (rebuild,) = master.client.request("POST", f"/api/builds/{build['id']}/rebuild", {})["buildrequest_ids"]

        # And a new head is pushed, which drops that test and breaks the calculator
        new = server.push({"test_wait.py": None, **BREAKING})
        deliver(master, "pull_request.synchronize", new, **hook)

        # Then the old head's build is stopped and its waiting rebuild withdrawn, superseded by the new head
        first, second = finished_builds(master.client, 2, timeout=60)
        assert (first["revision"], first["result"], first["summary"]) == (
            old,
            "CANCELLED",
            f"stopped: superseded by {new}",
        )
        withdrawn = master.client.request("GET", f"/api/buildrequests/{rebuild}")
        assert (withdrawn["result"], withdrawn["summary"], withdrawn["builds"]) == (
            "CANCELLED",
            f"superseded by {new}",
            [],
        )
        # And the new head is built, and fails
        assert (second["revision"], second["result"]) == (new, "FAILURE")

        # And GitHub heard of both heads: the old one's check run cancelled, the new one's failed,
        # with the failing test annotated
        def completed() -> dict[str, CheckRun]:
            done = [r for r in api.check_runs.values() if r.fields.get("status") == "completed"]
            return {r.fields["head_sha"]: r for r in done} if len(done) == 2 else {}

        runs = wait_for(completed, 30, "two completed check runs")
        assert api.refused == []
        assert (runs[old].fields["conclusion"], runs[new].fields["conclusion"]) == ("cancelled", "failure")
        (annotation,) = runs[new].annotations
        assert (annotation["path"], annotation["annotation_level"]) == ("test_calc.py", "failure")
        assert "6 != 5" in annotation["message"]
    finally:
        api.close()
