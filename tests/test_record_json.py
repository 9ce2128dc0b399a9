"""The JSON of the records people read: the keys the API has always shown, and a way back."""

from __future__ import annotations

import dataclasses
import json

from flowbot.junit import Outcome, TestCase
from flowbot.pull_requests import PullRequest
from flowbot.record_json import (
    artifact_json,
    build_detail_json,
    build_event_json,
    build_from_json,
    build_json,
    build_link_json,
    build_report_json,
    change_brief_json,
    change_json,
    pull_request_json,
    reported_test_json,
    request_json,
    step_from_json,
    step_json,
    worker_from_json,
    worker_json,
)
from flowbot.records import (
    Build,
    BuildLink,
    BuildRequest,
    Change,
    ReportedTest,
    RunningRef,
    SourceStamp,
    StepRecord,
    StoredArtifact,
    StoredPullRequest,
    WorkerState,
)
from flowbot.results import Result

STEP = StepRecord(
    number=0,
    name="compile",
    result=Result.WARNINGS,
    started_at=101.0,
    finished_at=102.5,
    summary="2 warnings",
    hidden=False,
    attempts=2,
    logs=("stdio", "warnings"),
)
BUILD = Build(
    id=7,
    builder="unit",
    number=3,
    worker="w1",
    started_at=100.0,
    finished_at=110.0,
    result=Result.FAILURE,
    branch="main",
    revision="abc123",
    request_id=5,
    submitted_at=90.0,
    summary="tests failed",
    attempt=1,
    steps=(STEP, StepRecord(1, "test", None, 102.5, None)),
    properties={"got_revision": ("abc123", "Git"), "jobs": (2, "Force")},
)


def through_text(data: dict) -> dict:
    """``data`` as a client reads it off the wire."""
    return json.loads(json.dumps(data))


def test_a_listed_build_has_the_keys_the_api_lists_in_their_order() -> None:
    assert list(build_json(BUILD)) == [
        "id",
        "builder",
        "number",
        "worker",
        "result",
        "branch",
        "revision",
        "request_id",
        "submitted_at",
        "started_at",
        "finished_at",
        "summary",
        "attempt",
    ]
    assert build_json(BUILD)["result"] == "FAILURE"


def test_a_builds_page_adds_its_steps_and_properties_as_pairs() -> None:
    detail = build_detail_json(BUILD)
    assert list(detail) == [*build_json(BUILD), "steps", "properties"]
    assert detail["properties"] == {"got_revision": ["abc123", "Git"], "jobs": [2, "Force"]}
    assert detail["steps"][0] == {
        "number": 0,
        "name": "compile",
        "result": "WARNINGS",
        "started_at": 101.0,
        "finished_at": 102.5,
        "summary": "2 warnings",
        "hidden": False,
        "attempts": 2,
        "logs": ["stdio", "warnings"],
    }
    assert detail["steps"][1]["result"] is None


def test_a_build_event_carries_the_keys_it_always_did() -> None:
    assert set(build_event_json(BUILD)) == set(build_json(BUILD)) - {"summary"}


def test_each_shape_reads_back_as_the_record_it_came_from() -> None:
    assert build_from_json(through_text(build_detail_json(BUILD))) == BUILD
    assert build_from_json(through_text(build_json(BUILD))) == dataclasses.replace(BUILD, steps=(), properties={})
    running = Build(id=8, builder="unit", number=4, worker="w2", started_at=200.0, request_id=6, submitted_at=199.0)
    assert build_from_json(through_text(build_event_json(running))) == running
    assert step_from_json(through_text(step_json(STEP))) == STEP


def test_a_request_shows_its_first_sources_branch_and_revision_and_its_end_by_name() -> None:
    request = BuildRequest(
        id=4,
        buildset_id=2,
        builder="unit",
        sourcestamps=(SourceStamp(branch="main", revision="abc"), SourceStamp(codebase="docs", branch="gh-pages")),
        reason="forced",
        priority=1,
        submitted_at=90.0,
        claimed_at=95.0,
        complete_at=99.0,
        result=Result.CANCELLED,
        summary="superseded by def",
    )
    shown = request_json(request)
    assert list(shown) == [
        "id",
        "buildset_id",
        "builder",
        "priority",
        "reason",
        "branch",
        "revision",
        "submitted_at",
        "claimed_at",
        "complete_at",
        "result",
        "summary",
        "matrix_id",
        "cell",
    ]
    assert (shown["branch"], shown["revision"], shown["result"]) == ("main", "abc", "CANCELLED")
    assert request_json(dataclasses.replace(request, sourcestamps=()))["branch"] is None


def test_a_change_lists_its_files_and_when_it_was_made_and_received() -> None:
    change = Change(branch="main", revision="abc", author="alice", files=("a.py", "b.py"), when=80.0, id=3)
    shown = through_text(change_json(dataclasses.replace(change, received_at=81.0)))
    assert list(shown) == [
        "id",
        "repository",
        "branch",
        "revision",
        "project",
        "codebase",
        "author",
        "committer",
        "comments",
        "category",
        "revlink",
        "received_at",
        "properties",
        "when",
        "files",
    ]
    assert (shown["files"], shown["when"], shown["received_at"]) == (["a.py", "b.py"], 80.0, 81.0)


def test_a_change_and_the_builds_it_caused_show_as_each_others_pages_list_them() -> None:
    change = Change(
        branch="main", revision="abc", author="alice", comments="fix", revlink="https://x/abc", when=80.0, id=3
    )
    assert through_text(change_brief_json(change)) == {
        "id": 3,
        "revision": "abc",
        "branch": "main",
        "author": "alice",
        "comments": "fix",
        "when": 80.0,
        "revlink": "https://x/abc",
    }
    assert list(change_brief_json(change)) == ["id", "revision", "branch", "author", "comments", "when", "revlink"]
    assert build_link_json(BuildLink(7, "unit", 2, Result.RETRY)) == {
        "id": 7,
        "builder": "unit",
        "number": 2,
        "result": "RETRY",
    }
    assert build_link_json(BuildLink(8, "lint", 1, None))["result"] is None


def test_a_reported_test_shows_its_case_and_step_with_no_file_as_null() -> None:
    case = TestCase("s", "tests.a", "test_bad", Outcome.FAILED, 0.3, "assert 3 == 5", "tests/a.py", 12)
    shown = through_text(reported_test_json(ReportedTest(case, step=1, step_name="test")))
    assert shown == {
        "suite": "s",
        "classname": "tests.a",
        "name": "test_bad",
        "outcome": "failed",
        "duration": 0.3,
        "message": "assert 3 == 5",
        "file": "tests/a.py",
        "line": 12,
        "step": 1,
        "step_name": "test",
    }
    assert list(reported_test_json(ReportedTest(case, 1, "test"))) == list(shown)
    unplaced = dataclasses.replace(case, file="", line=None)
    assert reported_test_json(ReportedTest(unplaced, 1, "test"))["file"] is None


def test_a_stored_file_shows_what_the_page_knows_of_it_but_not_its_mtime() -> None:
    stored = StoredArtifact("dist/app.tar.gz", 1024, "ab" * 32, 5_000_000_000, 110.0, 2, "package", replaced=False)
    shown = artifact_json(
        stored, content_type="application/gzip", url="/builds/7/artifacts/dist/app.tar.gz", available=True
    )
    assert list(shown) == [
        "path",
        "size",
        "sha256",
        "step",
        "step_name",
        "stored_at",
        "content_type",
        "url",
        "available",
    ]
    assert (shown["size"], shown["step_name"], shown["available"]) == (1024, "package", True)


def test_a_pull_request_shows_its_state_and_its_builds_only_when_read_with_them() -> None:
    pr = PullRequest("org/repo", 12, title="Add", url="https://x/12", head_branch="feature", author="bob", fork=True)
    open_one = StoredPullRequest(4, pr, updated_at=100.0, closed_at=None)
    keys = [
        "id",
        "repository",
        "number",
        "title",
        "url",
        "base_branch",
        "head_branch",
        "head_repository",
        "author",
        "fork",
        "updated_at",
        "closed_at",
        "state",
    ]
    assert list(pull_request_json(open_one)) == keys
    assert (pull_request_json(open_one)["state"], pull_request_json(open_one)["fork"]) == ("open", True)
    closed = dataclasses.replace(open_one, closed_at=120.0, builds=(BUILD,))
    shown = through_text(pull_request_json(closed))
    assert list(shown) == [*keys, "builds"]
    assert (shown["state"], shown["builds"]) == ("closed", [through_text(build_json(BUILD))])


def test_a_worker_reads_back_from_its_json_and_says_how_it_stands() -> None:
    worker = WorkerState(
        "w1", "docker", True, 10.0, 20.0, {"hostname": "h"}, (RunningRef(3, "unit", 3),), True, "disk full", True, None
    )
    assert worker_from_json(through_text(worker_json(worker))) == worker
    assert worker.standing == "connected, shutting down, paused (disk full)"
    assert dataclasses.replace(worker, connected=False, paused=False, shutting_down=False).standing == "offline"
    assert dataclasses.replace(worker, paused_reason=None, shutting_down=False).standing == "connected, paused"


def test_a_reported_build_names_every_result_a_successful_steps_too() -> None:
    passed = dataclasses.replace(STEP, result=Result.SUCCESS)
    build = dataclasses.replace(
        BUILD, steps=(passed, StepRecord(1, "test", None, 102.5, None)), previous_result=Result.SUCCESS
    )
    shown = through_text(build_report_json(build))
    assert list(shown) == [
        "id",
        "builder",
        "number",
        "worker",
        "started_at",
        "finished_at",
        "result",
        "previous_result",
        "branch",
        "revision",
        "reason",
        "sourcestamps",
        "properties",
        "steps",
        "url",
        "artifacts",
    ]
    assert (shown["result"], shown["previous_result"]) == ("FAILURE", "SUCCESS")
    assert shown["steps"] == [
        {"number": 0, "name": "compile", "result": "SUCCESS"},
        {"number": 1, "name": "test", "result": None},
    ]
