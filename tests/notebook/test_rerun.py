"""Triage from the kernel: one step of a failed build run again on a real worker."""

from __future__ import annotations

import pytest

import flowbot
from flowbot import Builder, ForceScheduler, Interpolate, Pipeline, Shell, Worker
from flowbot.errors import InvalidRequest
from flowbot.results import Result


def pipeline() -> Pipeline:
    # The test step fails unless the build's "fixed" property says yes.
    test = Shell(
        Interpolate('echo "testing on $FLOWBOT_WORKER"; echo "fixed=%(prop:fixed)s"; test "%(prop:fixed)s" = yes'),
        name="test",
    )
    return Pipeline(
        workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
        schedulers=[ForceScheduler("force", builders=["unit"])],
        builders=[
            Builder(
                "unit",
                workers=["w1", "w2"],
                properties={"fixed": "no"},
                steps=[Shell("echo compiling", name="compile"), test, Shell("echo packaged", name="package")],
            )
        ],
    )


async def test_a_failing_step_runs_again_on_its_worker_recorded_as_a_rerun_of_its_build(tmp_path):
    async with flowbot.Master(pipeline(), db=f"sqlite:///{tmp_path / 'm.sqlite'}") as master:
        await master.start_local_workers()
        await master.force("unit")
        await master.wait_idle(timeout=60)
        [failed] = await master.store.builds.query()
        assert failed.result == Result.FAILURE

        # Run step 2 again as it was: its output comes line by line, and it fails again
        lines: list[str] = []
        again = await master.rerun_step(failed.id, 2, output=lines.append)
        assert again.result == Result.FAILURE and again.worker == failed.worker
        assert lines[0].startswith('shell: echo "testing on $FLOWBOT_WORKER"; echo "fixed=no"')
        assert lines[1:3] == [f"testing on {failed.worker}", "fixed=no"]
        assert lines[-1].startswith("program finished with exit code 1")
        assert [(s.number, s.name, s.result) for s in again.steps] == [(1, "test", Result.FAILURE)]
        assert again.properties["rerun_of"] == (failed.id, "Rerun")
        assert again.properties["rerun_step"] == (2, "Rerun")

        # With a property changed, on the other worker, it passes
        other = "w2" if failed.worker == "w1" else "w1"
        lines.clear()
        fixed = await master.rerun_step(failed.id, 2, worker=other, properties={"fixed": "yes"}, output=lines.append)
        assert fixed.result == Result.SUCCESS and fixed.worker == other
        assert lines[1:3] == [f"testing on {other}", "fixed=yes"]

        # With its command changed
        changed = await master.rerun_step(failed.id, 2, command="echo replaced", output=lines.append)
        assert changed.result == Result.SUCCESS and "replaced" in lines

        # The reruns are builds of their own, linked to the original in History
        builds = master.history.builds()
        assert len(builds) == 4
        report = master.history.build(again.id)
        assert report.rerun_of == failed.id and master.history.build(failed.id).rerun_of is None
        assert list(report.steps["number"]) == [2] and "fixed=no" in report.log(2)
        reruns = await master.store.builds.query()
        assert sorted(b.id for b in reruns if b.id != failed.id) == sorted([again.id, fixed.id, changed.id])

        with pytest.raises(InvalidRequest, match="steps 1 to 3, not 4"):
            await master.rerun_step(failed.id, 4)
        with pytest.raises(InvalidRequest, match="does not run on worker 'w9'"):
            await master.rerun_step(failed.id, 2, worker="w9")
