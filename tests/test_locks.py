"""How a pipeline may use locks (``flowbot/locks.py``): the traps that would deadlock or merge locks
silently are configuration errors at the line that sets them."""

from __future__ import annotations

import sys

import pytest

from flowbot import Builder, MasterLock, Pipeline, Shell, Worker, WorkerLock
from flowbot.errors import ConfigErrors
from flowbot.locks import problems


def here() -> int:
    return sys._getframe(1).f_lineno


def test_a_step_taking_a_lock_its_builder_holds_is_a_config_error_at_the_step() -> None:
    # Given a builder that holds a lock for the whole build, and a step of it that takes it again
    deploy = MasterLock("deploy")
    line = here() + 1
    step = Shell("make deploy", name="deploy", locks=[deploy.access("exclusive")])

    # Then the pipeline is refused at once, instead of its build waiting for itself for ever
    with pytest.raises(ConfigErrors) as caught:
        Pipeline(
            workers=[Worker("w1", secret="s")],
            builders=[Builder("release", workers=["w1"], locks=[deploy.access()], steps=[step])],
        )
    (error,) = caught.value.errors
    assert (error.filename, error.lineno) == (__file__, line)
    assert error.problem.startswith("builder 'release' holds lock 'deploy' for the whole build and its step 'deploy'")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ((MasterLock, {"max_count": 1}), (MasterLock, {"max_count": 2})),
        ((MasterLock, {}), (WorkerLock, {})),
        ((WorkerLock, {"max_count_for_worker": {"big": 2}}), (WorkerLock, {})),
    ],
)
def test_two_different_locks_of_one_name_are_a_config_error_at_the_second(first, second) -> None:
    # Given two locks of the same name that differ, used by two builders
    line = here() + 1
    disk = first[0]("disk", **first[1])
    other = second[0]("disk", **second[1])

    # Then the pipeline is refused, instead of the two silently being one lock
    with pytest.raises(ConfigErrors) as caught:
        Pipeline(
            workers=[Worker("w1", secret="s")],
            builders=[
                Builder("a", workers=["w1"], locks=[disk.access()], steps=[Shell("make")]),
                Builder("b", workers=["w1"], steps=[Shell("make", locks=[other.access()])]),
            ],
        )
    (error,) = caught.value.errors
    assert (error.filename, error.lineno) == (__file__, line + 1)
    assert error.problem.startswith(f"{other!r} has the name of {disk!r} (at {__file__}:{line})")


def test_locks_of_one_name_and_the_same_counts_are_one_lock() -> None:
    # Given two builders, each with its own MasterLock object of one name and count (a helper
    # function making the builders, say)
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        builders=[
            Builder(name, workers=["w1"], locks=[MasterLock("deploy", max_count=2).access()], steps=[Shell("make")])
            for name in ("a", "b")
        ],
    )
    # Then the pipeline is taken, and both builders hold the one real lock
    a, b = (builder.locks[0].lock for builder in pipeline.builders)
    assert a is not b and problems(pipeline.builders) == []
    assert a.scope("w1") == b.scope("w1") == ("deploy", "")
