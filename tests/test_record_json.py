"""The JSON of the records people read: the keys the API has always shown, and a way back."""

from __future__ import annotations

import dataclasses
import json

from flowbot.record_json import (
    build_detail_json,
    build_event_json,
    build_from_json,
    build_json,
    step_from_json,
    step_json,
)
from flowbot.records import Build, StepRecord
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
