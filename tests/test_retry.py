"""``Retry`` (``flowbot/retry.py``): what a failure must show to be tried again, and the patterns
it finds in streamed output."""

from __future__ import annotations

from flowbot import Retry, Shell
from flowbot.results import Result
from flowbot.retry import Failure, PatternWatch
from flowbot.steps.base import CommandResult


def test_a_failure_is_retried_for_what_the_retry_names_and_nothing_else():
    retry = Retry(attempts=3, on=[75, "lost worker", r"connection (reset|refused)"])
    assert retry.matches(Failure(exit_codes=frozenset({75}))) == "exit code 75"
    assert retry.matches(Failure(lost_worker=True)) == "the worker was lost"
    found = Failure(exit_codes=frozenset({1}), patterns=frozenset({r"connection (reset|refused)"}))
    assert retry.matches(found) == "the output matched 'connection (reset|refused)'"
    assert retry.matches(Failure(exit_codes=frozenset({1}))) is None
    assert Retry(on=[1]).matches(Failure(lost_worker=True)) is None


def test_patterns_are_found_across_pieces_of_output_but_not_across_lines():
    watch = PatternWatch(Retry(on=[r"connection reset", r"^FATAL"]))
    watch.feed(b"uploading...\nconnection re")
    watch.feed(b"set by peer\nFAT")
    watch.end()
    assert watch.found == {r"connection reset"}  # "FAT" alone is not FATAL
    watch = PatternWatch(Retry(on=[r"^FATAL"]))
    watch.feed(b"ok\nFATAL")
    watch.end()
    assert watch.found == {r"^FATAL"}


def test_decode_rc_says_what_each_exit_code_means():
    step = Shell("lint", decode_rc={0: Result.SUCCESS, 1: Result.WARNINGS, 3: Result.SKIPPED})
    assert [step.evaluate(CommandResult(rc)) for rc in (0, 1, 2, 3, None)] == [
        Result.SUCCESS,
        Result.WARNINGS,
        Result.FAILURE,  # an exit code it leaves out
        Result.SKIPPED,
        Result.FAILURE,  # no process ran
    ]
    assert Shell("make").evaluate(CommandResult(1)) == Result.FAILURE
