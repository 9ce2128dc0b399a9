"""Chat messages as the notifiers write them, and the settings they refuse with file and line."""

from __future__ import annotations

import asyncio

import pytest

from flowbot import ConfigError, HttpStatusPush, MatrixNotifier, SlackNotifier
from flowbot.records import Build, StepRecord
from flowbot.reporters.commit_status import CommitStatusReporter
from flowbot.results import Result


def failed(**fields) -> Build:
    defaults = dict(
        id=9,
        builder="unit",
        number=12,
        worker="w1",
        started_at=100.0,
        finished_at=163.5,
        result=Result.FAILURE,
        branch="main",
        revision="1a2b3c4d5e6f7a8b",
        reason="a push",
        steps=(StepRecord(1, "compile", Result.FAILURE, 100.0, 163.0),),
        log_step="compile",
        log_tail="\n".join(f"line {n}" for n in range(40)),
        url="https://ci.example.com/#/builds/9",
        properties={"owner": "alice"},
    )
    return Build(**{**defaults, **fields})


def test_slack_shows_the_last_lines_of_a_failure_within_slacks_limits():
    message = SlackNotifier("https://hooks.slack.com/services/x").message(failed(log_tail="x" * 10_000))
    section = message["blocks"][2]["text"]["text"]
    assert len(section) <= 3000 and section.endswith("xxx```")
    facts = [f["text"] for f in message["blocks"][1]["fields"]]
    assert facts == [
        "*Branch*\nmain",
        "*Revision*\n1a2b3c4d5e6f",
        "*Worker*\nw1",
        "*Took*\n1 min 3 s",
        "*Reason*\na push",
    ]


def test_matrix_shows_fifteen_lines_of_the_log():
    body = MatrixNotifier("https://matrix.example.org", "!r:example.org", "t").message(failed())["body"]
    assert "line 24" not in body and "line 25\n" in body and body.endswith("line 39")


def test_a_template_is_filled_with_the_builds_fields():
    push = HttpStatusPush(
        "http://127.0.0.1:1/", body={"text": "{headline} by {properties[owner]}{properties[x]}", "n": 3}
    )
    assert push.payload("finished", failed()) == {"text": "FAILURE: unit #12 on main (1a2b3c4d5e) by alice", "n": 3}
    assert push.payload("started", failed(result=None))["text"].startswith("RUNNING: unit #12")


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: HttpStatusPush("http://h/", body={"text": "{bulider}"}), "names {bulider}, which builds do not have"),
        (lambda: HttpStatusPush("http://h/", body=["{url.netloc}"]), "names {url.netloc}"),
        (lambda: HttpStatusPush("http://h/", body={"a": ["{headline"]}), "(write a brace as {{ or }})"),
        (lambda: SlackNotifier(None), "SlackNotifier needs the webhook's URL"),
        (lambda: SlackNotifier(42), "webhook_url must be a string or a secret"),
        (lambda: MatrixNotifier("matrix.example.org", "!r:x", "t"), "homeserver must be an http(s) URL"),
        (lambda: MatrixNotifier("https://m.example.org", "#room:x", "t"), "room_id must be a room's id"),
    ],
)
def test_misuse_fails_with_file_and_line(make, problem):
    with pytest.raises(ConfigError) as caught:
        make()
    assert problem in str(caught.value)
    assert caught.value.filename == __file__ and caught.value.lineno is not None


def test_chat_and_commit_statuses_say_what_the_steps_said():
    steps = (
        StepRecord(0, "test", Result.FAILURE, 100.0, 150.0, "3 failed, 120 passed"),
        StepRecord(1, "docs", Result.SUCCESS, 150.0, 160.0),
    )
    message = SlackNotifier("https://hooks.slack.com/services/x").message(failed(steps=steps))
    assert "*Steps*\ntest: 3 failed, 120 passed" in [f["text"] for f in message["blocks"][1]["fields"]]
    body = MatrixNotifier("https://matrix.example.org", "!r:example.org", "t").message(failed(steps=steps))["body"]
    assert "test: 3 failed, 120 passed" in body

    described = []

    class Recording(CommitStatusReporter):
        states = {Result.FAILURE: "failure"}

        async def set_status(self, build: Build, state: str, description: str) -> None:
            described.append(description)

    asyncio.run(Recording().build_finished(failed(steps=steps)))
    assert described == ["build #12: FAILURE in 64 s (test: 3 failed, 120 passed)"]
