"""The mail a MailNotifier writes: a readable subject and body."""

from __future__ import annotations

from flowbot import MailNotifier
from flowbot.records import Build, StepRecord
from flowbot.reporters.mail import subject
from flowbot.results import Result


def failed() -> Build:
    return Build(
        id=7,
        builder="unit",
        number=12,
        worker="w1",
        started_at=100.0,
        finished_at=175.0,
        result=Result.FAILURE,
        branch="main",
        revision="1a2b3c4d5e6f7",
        reason="on-change: change 1a2b by alice",
        previous_result=Result.SUCCESS,
        url="https://ci.example.com/#/builds/7",
        log_step="test",
        log_tail="collected 3 items\nFAILED test_parser.py::test_empty",
        steps=(
            StepRecord(0, "checkout", Result.SUCCESS, 100.0, 101.5),
            StepRecord(1, "test", Result.FAILURE, 101.5, 175.0),
        ),
    )


def test_the_subject_says_what_happened_in_one_line():
    assert subject(failed()) == "FAILURE: unit #12 on main (1a2b3c4d5e)"


def test_the_body_has_the_facts_the_steps_and_the_log_tail():
    message = MailNotifier("ci@example.com", ["a@example.com", "b@example.com"]).message(failed())
    assert message["To"] == "a@example.com, b@example.com"
    body = message.get_content()
    assert body.startswith("Build unit #12 ended with FAILURE (the build before was SUCCESS).\n")
    assert "Build:     #12  https://ci.example.com/#/builds/7" in body
    assert "Duration:  1 min 15 s" in body
    assert "  SUCCESS    checkout                 1.5 s" in body
    assert "  FAILURE    test" in body
    assert 'The last 2 lines of the log of step "test":' in body
    assert "    FAILED test_parser.py::test_empty" in body


def test_the_password_stays_out_of_repr():
    notifier = MailNotifier("ci@example.com", "a@example.com", username="ci", password="hunter2")
    assert "hunter2" not in repr(notifier) and "hunter2" not in repr(vars(notifier).keys())
