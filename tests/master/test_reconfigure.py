"""The master's reconfigure, embedded in the test's event loop with real local workers."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import pytest

import flowbot
from flowbot import Builder, ConfigError, ForceScheduler, Periodic, Pipeline, Reporter, Result, Shell, Worker
from flowbot.record_json import build_detail_json, build_json
from flowbot.sources.base import ChangeSource


class TrackedSource(ChangeSource):
    """A change source that is listed in ``running`` while it runs (and starts slowly)."""

    def __init__(self, name: str, running: list[TrackedSource]):
        super().__init__(name)
        self.running = running

    async def start(self, context) -> None:
        await asyncio.sleep(0.05)
        self.running.append(self)

    async def stop(self) -> None:
        await asyncio.sleep(0.01)
        self.running.remove(self)


class Recorder(Reporter):
    """Remembers the builds it is told have finished."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: list[str] = []

    async def build_finished(self, build) -> None:
        self.finished.append(f"{build.builder} #{build.number}")


def pipeline(tag: str, *, sources=(), reporters=(), master=None) -> Pipeline:
    return Pipeline(
        workers=[Worker("w1", secret="s")],
        sources=sources,
        schedulers=[ForceScheduler("force", builders=["b"])],
        builders=[Builder("b", workers=["w1"], steps=[Shell("true", name=tag)])],
        reporters=reporters,
        master=master,
    )


async def test_overlapping_reconfigures_leave_one_set_of_change_sources_running(tmp_path):
    running: list[TrackedSource] = []
    master = flowbot.Master(
        pipeline("first", sources=[TrackedSource("s", running)]), db=f"sqlite:///{tmp_path / 'm.db'}"
    )
    await master.start()
    try:
        # When two reconfigures are asked for at once (say, a reconfig request and a notebook cell)
        second = pipeline("second", sources=[TrackedSource("s", running)])
        last = pipeline("third", sources=[TrackedSource("s", running)])
        await asyncio.gather(master.reconfigure(second), master.reconfigure(last))

        # Then the last one runs, with its one change source, and no other source runs
        assert master.pipeline is last and master.pipeline.builders[0].step_names == ["third"]
        assert running == last.sources and master.sources.running == last.sources
    finally:
        await master.stop()
    assert running == []


async def test_reporters_follow_the_pipeline_set_before_start_and_at_each_reconfigure(tmp_path):
    # Given a master whose pipeline was replaced before it started (as a notebook cell may)
    before, first, second = Recorder(), Recorder(), Recorder()
    master = flowbot.Master(pipeline("one", reporters=[before]), db=f"sqlite:///{tmp_path / 'm.db'}")
    pipeline("one", reporters=[first], master=master)
    await master.start()
    try:
        await master.start_local_workers()
        await master.force("b")
        await master.wait_idle(timeout=30)
        await _until(lambda: first.finished == ["b #1"])

        # When a reconfigure swaps the reporter for another
        await master.reconfigure(pipeline("two", reporters=[second]))
        await master.force("b")
        await master.wait_idle(timeout=30)
        await _until(lambda: second.finished == ["b #2"])
    finally:
        await master.stop()

    # Then each build went to the reporters of the pipeline that ran when it finished
    assert before.finished == [] and first.finished == ["b #1"] and second.finished == ["b #2"]


class Broken(Periodic):
    """A timed scheduler of the user's whose timing raises once the master arms it."""

    def next_run(self, after: float) -> float | None:
        raise ZeroDivisionError("the schedule's arithmetic is wrong")


async def test_a_pipeline_that_fails_to_start_leaves_the_master_on_the_one_before(tmp_path):
    # Given a master running a pipeline with a change source and a reporter
    running: list[TrackedSource] = []
    reporter = Recorder()
    good = pipeline("good", sources=[TrackedSource("s", running)], reporters=[reporter])
    master = flowbot.Master(good, db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    try:
        await master.start_local_workers()

        # When a reconfigure brings a scheduler that raises as it is armed (after the checks passed)
        broken = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[Broken("every-minute", builders=["b"], period=60)],
            builders=[Builder("b", workers=["w1"], steps=[Shell("true", name="broken")])],
        )
        try:
            await master.reconfigure(broken)
        except ZeroDivisionError:
            pass
        else:
            raise AssertionError("the failed reconfigure did not say so")

        # Then the master runs the pipeline it had, whole: its source, its force scheduler, its reporter
        assert master.pipeline is good and running == good.sources
        await master.force("b")
        await master.wait_idle(timeout=30)
        await _until(lambda: reporter.finished == ["b #1"])
        (build,) = [build_json(b) for b in await master.store.builds.query()]
        assert build["result"] == "SUCCESS"
        assert [s["name"] for s in (build_detail_json(await master.store.builds.get(build["id"])))["steps"]] == ["good"]
    finally:
        await master.stop()


async def test_a_builder_added_in_a_cell_can_be_forced_in_the_same_cell(tmp_path):
    # Given a running master with a local worker
    master = flowbot.Master(pipeline("first"), db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    try:
        await master.start_local_workers()

        # When a cell hands it a pipeline with a new builder and forces that builder at once
        Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["b", "new"])],
            builders=[
                Builder("b", workers=["w1"], steps=[Shell("true")]),
                Builder("new", workers=["w1"], steps=[Shell("true", name="added")]),
            ],
            master=master,
        )
        await master.force("new")
        await master.wait_idle(timeout=30)

        # Then the new builder built
        (build,) = [build_json(b) for b in await master.store.builds.query(builder="new")]
        assert build["result"] == "SUCCESS"
    finally:
        await master.stop()


async def test_a_cell_whose_pipeline_fails_to_start_makes_the_next_awaited_call_raise_why(tmp_path):
    # Given a running master with a local worker
    good = pipeline("good")
    master = flowbot.Master(good, db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    try:
        await master.start_local_workers()

        # When a cell hands it a pipeline whose scheduler raises as it is armed
        Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[Broken("every-minute", builders=["b"], period=60), ForceScheduler("force", builders=["b"])],
            builders=[Builder("b", workers=["w1"], steps=[Shell("true", name="broken")])],
            master=master,
        )

        # Then the next cell's force says why, once, and the master builds with the pipeline it had
        with pytest.raises(ConfigError, match=r"could not be applied \(ZeroDivisionError: the schedule.s arithmetic"):
            await master.force("b")
        assert master.pipeline is good
        await master.force("b")
        await master.wait_idle(timeout=30)
        (build,) = [build_json(b) for b in await master.store.builds.query()]
        assert [s["name"] for s in (build_detail_json(await master.store.builds.get(build["id"])))["steps"]] == ["good"]
    finally:
        await master.stop()


async def _until(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def slow_pipeline(step: str, directory: Path, *, workers=("w1",)) -> Pipeline:
    """A builder whose builds run until a file ``go`` appears in ``directory``, so that a second request waits."""
    wait = Shell(f"while [ ! -e {shlex.quote(str(directory / 'go'))} ]; do sleep 0.05; done", name=step)
    return Pipeline(
        workers=[Worker(name, secret="s") for name in workers],
        schedulers=[ForceScheduler("force", builders=["b"])],
        builders=[Builder("b", workers=["w1"], steps=[wait])],
    )


async def test_a_reconfigure_says_what_it_changes_and_does_to_running_and_waiting_builds(tmp_path):
    # Given a master with two workers, one build of b running on w1 and another waiting for it
    master = flowbot.Master(slow_pipeline("old", tmp_path, workers=("w1", "w2")), db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    try:
        await master.start_local_workers()
        await master.force("b")
        await master.force("b")
        assert len(master.running) == 1 and len(master.queue) == 1

        # When a cell hands it a pipeline whose builder runs another step, without w2, as a dry run
        new = slow_pipeline("new", tmp_path)
        shown = master.use(new, dry_run=True)

        # Then it says so, field by field, with what happens to each build, and changes nothing
        assert shown.outcome.value == "not applied (dry run)" and master.pipeline is not new
        assert [(c.kind, c.name, c.edit.value) for c in shown.diff] == [
            ("worker", "w2", "removed"),
            ("builder", "b", "changed"),
        ]
        assert [(f.field, f.before, f.after) for f in shown.diff.changes[1].fields] == [
            ("steps", "old", "new"),
        ]
        assert shown.effects == (
            "b #1 finishes with the steps it began with",
            "1 pending request of b run as the new pipeline defines it",
            "worker w2 is connected but gets no new builds",
        )
        assert "not applied (dry run)" in str(shown) and "b #1 finishes" in shown._repr_html_()

        # And when it is applied, the report says so, the running build keeps its step and the
        # waiting one runs the new one
        applied = await master.reconfigure(new)
        assert applied.applied and applied.effects == shown.effects and master.pipeline is new
        (tmp_path / "go").touch()
        await master.wait_idle(timeout=30)
        builds = [
            build_detail_json(await master.store.builds.get(b.id)) for b in reversed(await master.store.builds.query())
        ]
        assert [b["steps"][0]["name"] for b in builds] == ["old", "new"]
        assert [b["result"] for b in builds] == [Result.SUCCESS.name] * 2
        # And the same pipeline again changes nothing
        assert not (await master.reconfigure(slow_pipeline("new", tmp_path), dry_run=True)).diff
    finally:
        await master.stop()
