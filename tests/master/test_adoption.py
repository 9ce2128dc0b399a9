"""What a worker coming back to a restarted master must hold for a build to be taken up."""

from __future__ import annotations

from flowbot.master.adoption import Adoption
from flowbot.records import BuildRequest, UnfinishedBuild, UnfinishedStep
from flowbot.results import Result


def _build(running_step: int, *, between: bool = False) -> UnfinishedBuild:
    """Build #1 of request 7, its steps before ``running_step`` done, that one running (``between``:
    that one ended too, and the next one's start is not recorded)."""
    steps = tuple(UnfinishedStep(10 + n, n, f"s{n}", Result.SUCCESS) for n in range(running_step))
    last = UnfinishedStep(10 + running_step, running_step, "s", Result.SUCCESS if between else None)
    return UnfinishedBuild(
        id=1,
        request=BuildRequest(7, 1, "work", ()),
        number=1,
        worker="w1",
        started_at=0.0,
        locks_wait=0.0,
        properties={},
        steps=(*steps, last),
        log_lines={},
    )


def _held(finished: bool) -> dict:
    return {"offsets": {"stdout": [0, 12]}, "finished": finished}


def test_a_finished_command_of_an_earlier_step_still_held_does_not_stop_the_build_being_taken_up():
    # Given a build recorded in its second step, whose worker still holds the first step's command,
    # finished (the master died before acknowledging it), besides the second's
    record = _build(running_step=1)
    held = {"r7.b1.s0.c1": _held(finished=True), "r7.b1.s1.c1": _held(finished=False)}

    # Then the build may go on from the second step's command
    assert Adoption._not_running(record, "r7.b1.s1.c1", held) is None


def test_another_command_of_the_build_still_running_or_of_a_later_step_stops_it():
    record = _build(running_step=1)
    running_earlier = {"r7.b1.s0.c1": _held(finished=False), "r7.b1.s1.c1": _held(finished=False)}
    second_of_step = {"r7.b1.s1.c2": _held(finished=True), "r7.b1.s1.c1": _held(finished=False)}
    later = {"r7.b1.s2.c1": _held(finished=True), "r7.b1.s1.c1": _held(finished=False)}
    for held in (running_earlier, second_of_step, later):
        assert "had started other commands" in Adoption._not_running(record, "r7.b1.s1.c1", held), held
    # And a command of another build does not matter
    assert Adoption._not_running(record, "r7.b1.s1.c1", {**later, "r70.b1.s0.c1": _held(False)}) is not None
    assert (
        Adoption._not_running(record, "r7.b1.s1.c1", {"r70.b1.s0.c1": _held(False), "r7.b1.s1.c1": _held(False)})
        is None
    )


def test_a_build_between_two_steps_goes_on_when_its_worker_runs_none_of_its_commands():
    # Given a build recorded between its second and third steps
    record = _build(running_step=1, between=True)
    assert record.running_step is None

    # Then a worker holding nothing of it, or only finished commands of the steps that ended (whose
    # acknowledgement the master died before sending), lets it go on with the third step
    assert Adoption._running_any(record, {}) is None
    finished = {"r7.b1.s0.c1": _held(finished=True), "r7.b1.s1.c1": _held(finished=True)}
    assert Adoption._running_any(record, {**finished, "r70.b1.s2.c1": _held(False)}) is None

    # And one running a command of a step that ended, or of the next (not recorded), does not
    for held in ({"r7.b1.s1.c1": _held(finished=False)}, {"r7.b1.s2.c1": _held(finished=True)}):
        assert "not recorded" in Adoption._running_any(record, {**finished, **held}), held
