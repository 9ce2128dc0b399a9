"""What a webhook asks of the master through its context: a closed pull request's work withdrawn,
a pull request built again on a ``/retest`` comment (across a restart), a check run's build re-run.

An embedded master with a real local worker and a SQLite store; the hook is handed GitHub's real
deliveries (tests/fixtures) as the HTTP server would hand them (served over HTTP in tests/e2e).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import flowbot
from flowbot import AnyBranchScheduler, Builder, GitHubHook, GitPoller, Pipeline, Shell, Worker
from flowbot.pull_requests import check_run_id
from flowbot.record_json import build_json, request_json

from ..gitrepos import GitRepo
from ..sources.test_github import comment
from ..support import wait_for_async

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github-webhooks"


def pipeline(step: str = "sleep 30") -> Pipeline:
    return Pipeline(
        workers=[Worker("w1", secret="s")],
        sources=[GitHubHook()],
        schedulers=[AnyBranchScheduler("all", builders=["unit"])],
        # Every head is built (none supersedes another), so that a closed pull request has some waiting
        builders=[
            Builder("unit", workers=["w1"], collapse_requests=False, cancel_superseded=False, steps=[Shell(step)])
        ],
    )


def delivery(name: str, **changes: Any) -> dict[str, Any]:
    payload = json.loads((FIXTURES / f"{name}.payload.json").read_bytes())
    if "head" in changes:
        payload["pull_request"]["head"]["sha"] = changes.pop("head")
    return payload | changes


async def deliver(master, event: str, payload: dict[str, Any], delivery_id: str = "") -> tuple[list[int], str]:
    hook = master.sources.by_name("github")
    headers = {"X-GitHub-Event": event, "Content-Type": "application/json"}
    if delivery_id:
        headers["X-GitHub-Delivery"] = delivery_id
    return await hook.deliver(headers, json.dumps(payload).encode())


async def test_closing_a_pull_request_cancels_its_pending_requests_and_stops_its_running_build(tmp_path):
    master = flowbot.Master(pipeline(), basedir=tmp_path, http=None)
    await master.start()
    try:
        await master.start_local_workers()
        # Given a pull request building its first head, its second head waiting, and a push waiting too
        await deliver(master, "pull_request", delivery("pull_request.opened", head="a" * 40))
        (pull_request_build,) = await wait_for_async(
            lambda: list(master.running.values()), 20, "the pull request's build to start"
        )
        await deliver(master, "pull_request", delivery("pull_request.synchronize", head="b" * 40))
        push = json.loads((FIXTURES / "push-with-new-branch.payload.json").read_bytes())
        await deliver(master, "push", push)
        assert len(master.queue) == 2

        # When the pull request is closed
        ids, note = await deliver(master, "pull_request", delivery("pull_request.closed"))

        # Then its running build is stopped, its waiting request cancelled; the push still builds
        assert ids == []
        assert note == "pull request #2 closed: 1 pending request(s) cancelled, 1 running build(s) stopped"
        requests = {r.revision: request_json(r) for r in await master.store.requests.query()}
        await wait_for_async(lambda: len(master.running) == 1 and not master.queue, 20, "the push to start")
        assert await pull_request_build.recorded() is None  # its end is in the store
        builds = [build_json(b) for b in await master.store.builds.query()]
        first = next(b for b in builds if b["revision"] == "a" * 40)
        assert first["result"] == "CANCELLED"
        assert requests["b" * 40]["result"] == "CANCELLED" and requests["b" * 40]["claimed_at"] is None
        (running,) = master.running.values()
        assert running.revision == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
        # A second close finds nothing left to cancel
        assert (await deliver(master, "pull_request", delivery("pull_request.closed")))[1].startswith(
            "pull request #2 closed: 0 pending request(s) cancelled, 0 running build(s) stopped"
        )
    finally:
        await master.stop()


async def test_a_retest_comment_builds_the_last_head_again_even_after_a_restart(tmp_path):
    # Given a master that built a pull request's head, then stopped
    master = flowbot.Master(pipeline("true"), basedir=tmp_path, http=None)
    await master.start()
    try:
        await master.start_local_workers()
        (change_id,), _ = await deliver(master, "pull_request", delivery("pull_request.opened", head="c" * 40))
        await master.wait_idle(30)
    finally:
        await master.stop()
    master = flowbot.Master(pipeline("true"), basedir=tmp_path, http=None)
    await master.start()
    try:
        await master.start_local_workers()

        # When a member comments /retest, and someone who is not a member does too
        ids, note = await deliver(master, "issue_comment", comment("/retest", "MEMBER"), "c1")
        refused, why = await deliver(master, "issue_comment", comment("/retest", "NONE"), "c2")
        again, repeated = await deliver(master, "issue_comment", comment("/retest", "MEMBER"), "c1")
        await master.wait_idle(30)

        # Then the member's comment built the same head again, as a new change with the same pull request
        assert len(ids) == 1 and ids[0] != change_id and note == "octocat asked for #2 to be built again"
        assert refused == [] and "(NONE) may not build pull request #2 again" in why
        assert again == [] and "was received before" in repeated
        builds = [build_json(b) for b in await master.store.builds.query()]
        assert [(b["revision"], b["branch"], b["result"]) for b in builds] == [
            ("c" * 40, "refs/pull/2/head", "SUCCESS"),
            ("c" * 40, "refs/pull/2/head", "SUCCESS"),
        ]
        _, spec = await master.store.builds.buildset_of(builds[0]["id"])
        assert list(spec.properties["pr_number"]) == [2, "Change"] and spec.properties["action"][0] == "retest"

        # Once closed, the pull request is forgotten: nothing to build again
        await deliver(master, "pull_request", delivery("pull_request.closed"))
        ids, note = await deliver(master, "issue_comment", comment("/retest", "OWNER"), "c3")
        assert ids == [] and "no change of pull request #2 is known to build again" in note
    finally:
        await master.stop()


async def test_a_check_run_rerequest_runs_its_build_again_once(tmp_path):
    master = flowbot.Master(pipeline("true"), basedir=tmp_path, http=None)
    await master.start()
    try:
        await master.start_local_workers()
        await deliver(master, "pull_request", delivery("pull_request.opened", head="d" * 40))
        await master.wait_idle(30)
        (build,) = [build_json(b) for b in await master.store.builds.query()]

        # A re-run of the build's check run runs it again, once however often it is delivered
        rerun = delivery("check_run.rerequested")
        rerun["check_run"] |= {"external_id": check_run_id(build["id"]), "head_sha": "d" * 40}
        ids, note = await deliver(master, "check_run", rerun, "r1")
        assert ids == [] and note.startswith(f"build {build['id']} runs again (request(s) ")
        assert "was received before" in (await deliver(master, "check_run", rerun, "r1"))[1]
        await master.wait_idle(30)
        builds = [build_json(b) for b in await master.store.builds.query()]
        assert [b["revision"] for b in builds] == ["d" * 40, "d" * 40]
        _, spec = await master.store.builds.buildset_of(builds[0]["id"])
        assert list(spec.properties["rebuild_of"]) == [build["id"], "Rebuild"]
        assert spec.reason == "re-run asked by octocat (by source:github)"

        # One that names another commit, or a build that does not exist, runs nothing, and says why
        rerun["check_run"]["head_sha"] = "e" * 40
        ids, note = await deliver(master, "check_run", rerun, "r2")
        assert ids == []
        assert note == f"build {build['id']} is not run again: build {build['id']} did not build {'e' * 40}"
        rerun["check_run"]["external_id"] = check_run_id(999)
        assert (await deliver(master, "check_run", rerun, "r3"))[1] == "build 999 is not run again: no build 999"
        assert len([build_json(b) for b in await master.store.builds.query()]) == 2
    finally:
        await master.stop()


async def test_a_pollers_loop_is_a_task_the_master_owns_and_ends_at_stop(tmp_path):
    # Given a master polling a repository
    repo = GitRepo(tmp_path / "project")
    repo.commit("first")
    polling = Pipeline(
        workers=[Worker("w1", secret="s")],
        sources=[GitPoller(repo.url, name="project", poll_interval=3600)],
        builders=[Builder("unit", workers=["w1"], steps=[Shell("true")])],
    )
    master = flowbot.Master(polling, basedir=tmp_path / "master", http=None)
    await master.start()
    try:
        # Then the poller's loop runs among the master's tasks
        assert [t.get_name() for t in master.tasks.named("poll ")] == ["poll project"]
    finally:
        await master.stop()
    # And none is left once the master has stopped
    assert master.tasks.named("") == []
