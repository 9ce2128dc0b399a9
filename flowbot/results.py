"""Build and step results, with Buildbot's vocabulary, codes and precedence."""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol


class Result(IntEnum):
    """The outcome of a step, build or buildset. The integer codes are Buildbot's."""

    #: Everything worked.
    SUCCESS = 0
    #: It worked, with something worth a look.
    WARNINGS = 1
    #: It ran and failed (a non-zero exit, a failing test).
    FAILURE = 2
    #: It did not run (a condition said no).
    SKIPPED = 3
    #: Something broke that is not the code's fault (a bug in a step, bad arguments).
    EXCEPTION = 4
    #: The worker went away; the request runs again.
    RETRY = 5
    #: Someone stopped it.
    CANCELLED = 6

    def __str__(self) -> str:
        return self.name


#: Worst first: a build's result is the first of these that any of its steps has.
PRECEDENCE = (
    Result.CANCELLED,
    Result.RETRY,
    Result.EXCEPTION,
    Result.FAILURE,
    Result.WARNINGS,
    Result.SUCCESS,
    Result.SKIPPED,
)
_RANK = {result: rank for rank, result in enumerate(PRECEDENCE)}


def worst(*results: Result) -> Result:
    """The worst of ``results`` by Buildbot's precedence (CANCELLED worst, SKIPPED mildest)."""
    return min(results, key=_RANK.__getitem__)


def combine(previous: Result, step: Result, flags: StepFlags) -> tuple[Result, bool]:
    """Fold a finished step into its build's result; returns ``(result, halt)``.

    Follows Buildbot's ``computeResultAndTermination``: ``flunk_on_failure`` and friends decide what
    a failing or warning step means for the build, and EXCEPTION, RETRY and CANCELLED always halt.
    """
    halt = False
    effect = step
    if step == Result.FAILURE:
        effect = Result.SUCCESS
        if flags.warn_on_failure:
            effect = Result.WARNINGS
        if flags.flunk_on_failure:
            effect = Result.FAILURE
        halt = flags.halt_on_failure
    elif step == Result.WARNINGS:
        effect = Result.WARNINGS if flags.warn_on_warnings else Result.SUCCESS
        if flags.flunk_on_warnings:
            effect = Result.FAILURE
    elif step in (Result.EXCEPTION, Result.RETRY, Result.CANCELLED):
        halt = True
    return worst(previous, effect), halt


class StepFlags(Protocol):
    """What a step's result means for its build (the attributes :func:`combine` reads)."""

    halt_on_failure: bool
    flunk_on_failure: bool
    warn_on_failure: bool
    warn_on_warnings: bool
    flunk_on_warnings: bool
