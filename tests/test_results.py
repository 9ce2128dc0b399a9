"""Results (``flowbot/results.py``): Buildbot's codes, precedence, and how a step's result folds into its build's."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from flowbot.results import Result, combine, worst
from flowbot.steps import Step

S, W, F, K, E, R, C = (
    Result.SUCCESS,
    Result.WARNINGS,
    Result.FAILURE,
    Result.SKIPPED,
    Result.EXCEPTION,
    Result.RETRY,
    Result.CANCELLED,
)

#: Buildbot's precedence, worst first, written out here rather than taken from the module under test.
WORST_FIRST = [C, R, E, F, W, S, K]


def test_codes_are_buildbots() -> None:
    assert [int(r) for r in (S, W, F, K, E, R, C)] == [0, 1, 2, 3, 4, 5, 6]
    assert str(Result.FAILURE) == "FAILURE"


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(WORST_FIRST, 2)), ids=lambda r: r.name)
def test_worst_follows_buildbots_precedence(a: Result, b: Result) -> None:
    # a comes before b in WORST_FIRST, so it is the worse one, whichever order they are given in
    assert worst(a, b) is a
    assert worst(b, a) is a


def test_worst_of_many_and_of_one() -> None:
    # SKIPPED has a higher code than SUCCESS, WARNINGS and FAILURE but is the mildest result
    assert worst(K, S, K) is S
    assert worst(S, W, K, F, W) is F
    assert worst(*WORST_FIRST[::-1]) is C
    assert worst(K) is K


#: (build so far, step result, step flags, build after, halt?) — Buildbot's computeResultAndTermination.
COMBINE_CASES = [
    # Defaults: a failure fails the build without halting it; warnings and skips change nothing
    (S, S, {}, S, False),
    (S, F, {}, F, False),
    (S, W, {}, S, False),
    (S, K, {}, S, False),
    (W, K, {}, W, False),
    (K, K, {}, K, False),
    # A result never gets better
    (F, S, {}, F, False),
    (E, F, {}, E, False),
    (W, F, {"flunk_on_failure": False}, W, False),
    # What a failure means
    (S, F, {"halt_on_failure": True}, F, True),
    (S, F, {"flunk_on_failure": False}, S, False),
    (S, F, {"flunk_on_failure": False, "warn_on_failure": True}, W, False),
    (S, F, {"warn_on_failure": True}, F, False),  # flunking wins over warning
    (S, F, {"flunk_on_failure": False, "halt_on_failure": True}, S, True),  # halts even when it does not flunk
    # What warnings mean
    (S, W, {"warn_on_warnings": True}, W, False),
    (S, W, {"flunk_on_warnings": True}, F, False),
    (S, W, {"warn_on_warnings": True, "flunk_on_warnings": True}, F, False),
    (S, W, {"halt_on_failure": True}, S, False),  # warnings never halt
    (F, W, {"warn_on_warnings": True}, F, False),
    # EXCEPTION, RETRY and CANCELLED always count and always halt, whatever the flags
    (S, E, {}, E, True),
    (S, E, {"flunk_on_failure": False}, E, True),
    (W, R, {}, R, True),
    (F, C, {}, C, True),
    (C, E, {}, C, True),
]


@pytest.mark.parametrize(
    ("previous", "step", "flags", "expected", "halt"),
    COMBINE_CASES,
    ids=[f"{p.name}+{s.name}{''.join('-' + k for k in f)}" for p, s, f, *_ in COMBINE_CASES],
)
def test_combine_folds_a_step_into_its_build_like_buildbot(
    previous: Result, step: Result, flags: dict[str, Any], expected: Result, halt: bool
) -> None:
    assert combine(previous, step, Step("step", **flags)) == (expected, halt)
