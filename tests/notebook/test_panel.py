"""The live panel over an embedded master, as a notebook user drives it (widget state)."""

from __future__ import annotations

import asyncio
from xml.etree import ElementTree

import pytest

import flowbot
from flowbot import (
    AnyBranchScheduler,
    Builder,
    Dependent,
    ForceScheduler,
    GitPoller,
    HttpStatusPush,
    Interpolate,
    IntParameter,
    MailNotifier,
    Pipeline,
    Shell,
    Trigger,
    Triggerable,
    Worker,
)
from flowbot.errors import NotFound


def pipeline(master=None, extra_builder: bool = False) -> Pipeline:
    builders = [
        Builder("unit", workers=["w1"], steps=[Shell(Interpolate("echo jobs=%(prop:jobs)s"), name="test")]),
        Builder("slow", workers=["w1"], steps=[Shell("echo started; sleep 30", name="sleep")]),
    ]
    if extra_builder:
        builders.append(Builder("docs", workers=["w1"], steps=[Shell("echo docs")]))
    return Pipeline(
        workers=[Worker("w1", secret="nb")],
        schedulers=[
            ForceScheduler("force", builders=[b.name for b in builders], params=[IntParameter("jobs", default=2)])
        ],
        builders=builders,
        master=master,
    )


async def until(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_the_panel_follows_builds_forces_with_parameters_and_stops_builds(tmp_path):
    # Given a master embedded in the running loop, with a real local worker, and its panel
    master = flowbot.Master(pipeline(), db=f"sqlite:///{tmp_path / 'nb.sqlite'}")
    await master.start()
    try:
        await master.start_local_workers()
        panel = master.panel()
        await until(lambda: "unit" in panel.builders.value and "no builds yet" in panel.builders.value)
        assert list(panel._param_widgets) == ["jobs"]

        # When the user forces unit with jobs=7 through the form
        panel.force_builder.value = "unit"
        panel._param_widgets["jobs"].value = 7
        ids = await panel.force()
        await master.wait_idle(timeout=30)

        # Then the panel shows it, green, and its log
        await until(lambda: "#1 SUCCESS" in panel.builders.value)
        assert ids and "forced unit" in panel.status.value
        panel.build_picker.value = panel.build_picker.options[0][1]
        await until(lambda: "jobs=7" in panel.log_tail.value)

        # And a long build can be stopped from it, its log tailing live meanwhile
        panel.force_builder.value = "slow"
        await panel.force()
        await until(lambda: any("running" in label for label, _ in panel.build_picker.options))
        panel.build_picker.value = next(v for label, v in panel.build_picker.options if "running" in label)
        await until(lambda: "started" in panel.log_tail.value)
        await panel.stop_selected()
        await until(lambda: "CANCELLED" in panel.builders.value)

        # And a worker paused through the master's API shows as paused, with why
        await master.pause_worker("w1", "<b>disk</b> full")
        await until(lambda: "paused</span>: &lt;b&gt;disk&lt;/b&gt; full" in panel.workers.value)
        with pytest.raises(NotFound):
            await master.unpause_worker("nobody")
        panel.close()
    finally:
        await master.stop()
    assert all(p.poll() is not None for p in master.local_workers.processes.values())


async def test_running_the_pipeline_cell_again_reconfigures_and_a_broken_one_changes_nothing(tmp_path):
    master = flowbot.Master(pipeline(), db=f"sqlite:///{tmp_path / 'nb.sqlite'}")
    await master.start()
    try:
        await master.start_local_workers()
        panel = master.panel()
        panel.force_builder.value = "slow"
        # The cell is run again with a new builder, which the panel's force form then offers
        pipeline(master=master, extra_builder=True)
        await until(lambda: list(panel.force_builder.options) == ["unit", "slow", "docs"])
        assert panel.force_builder.value == "slow"  # what the user chose stays chosen
        panel.force_builder.value = "docs"
        assert await panel.force()
        await master.wait_idle(timeout=30)
        (build,) = await master.store.builds(builder="docs")
        assert build["result"] == "SUCCESS"
        panel.close()
        # A cell with a mistake raises where it is, and the master keeps its pipeline
        with pytest.raises(flowbot.ConfigError, match="names worker 'nobody'"):
            Pipeline(
                workers=[Worker("w1")],
                builders=[Builder("x", workers=["nobody"], steps=[Shell("true")])],
                master=master,
            )
        assert master.pipeline.builder("docs") is not None
    finally:
        await master.stop()


async def test_the_panel_shows_the_end_of_an_older_builds_log_without_reading_all_of_it(tmp_path):
    # Given a build from before the panel whose steps printed 250 and 100 000 lines
    long_log = Pipeline(
        workers=[Worker("w1", secret="nb")],
        schedulers=[ForceScheduler("force", builders=["long"])],
        builders=[
            Builder(
                "long",
                workers=["w1"],
                steps=[Shell("seq 1 250", name="short"), Shell("seq 1 100000", name="long")],
            )
        ],
    )
    master = flowbot.Master(long_log, db=f"sqlite:///{tmp_path / 'nb.sqlite'}")
    await master.start()
    try:
        await master.start_local_workers()
        await master.force("long")
        await master.wait_idle(timeout=30)
        whole_logs_read = []
        log_lines = master.store.log_lines
        master.store.log_lines = lambda *args, **kwargs: whole_logs_read.append(args) or log_lines(*args, **kwargs)

        # When it is picked in the panel
        panel = master.panel()
        await until(lambda: panel.build_picker.options)
        panel.build_picker.value = panel.build_picker.options[0][1]
        await until(lambda: "100000" in panel.log_tail.value)

        # Then the panel shows the last lines, read from the end of the log only
        shown = panel.log_tail.value.split(">", 1)[1].rsplit("<", 1)[0].split("\n")
        assert len(shown) == 200 and shown[-2] == "100000" and shown[0] == "99802"
        assert whole_logs_read == []
        panel.close()
    finally:
        await master.stop()


def test_a_pipeline_draws_itself_as_a_graph() -> None:
    # Given a pipeline with a source, schedulers, a trigger, a dependent builder and reporters
    drawn = Pipeline(
        workers=[Worker("w1", secret="nb")],
        sources=[GitPoller("/srv/git/app.git", branches=["main"])],
        schedulers=[
            AnyBranchScheduler("on-change", builders=["unit"]),
            Triggerable("after-unit", builders=["package"]),
            Dependent("docs", upstream="package", builders=["publish"]),
        ],
        builders=[
            Builder("unit", workers=["w1"], steps=[Shell("make test"), Trigger(schedulers=["after-unit"])]),
            Builder("package", workers=["w1"], steps=[Shell("make dist")]),
            Builder("publish", workers=["w1"], steps=[Shell("make docs")]),
        ],
        reporters=[
            HttpStatusPush("http://127.0.0.1:1/hook"),
            MailNotifier("ci@example.org", ["dev@example.org"], builders=["unit"], mode="failing"),
        ],
    )

    # When it is drawn (as Jupyter shows it)
    svg = ElementTree.fromstring(drawn._repr_html_())
    ns = "{http://www.w3.org/2000/svg}"
    nodes = {g.find(f"{ns}title").text.split(": ")[0] for g in svg.iter(f"{ns}g")}
    arrows = {path.find(f"{ns}title").text for path in svg.iter(f"{ns}path") if path.find(f"{ns}title") is not None}

    # Then every node is a box, in the order changes flow, and every edge an arrow
    assert nodes == {
        "source gitpoller:app",
        "scheduler on-change",
        "scheduler after-unit",
        "scheduler docs",
        "builder unit",
        "builder package",
        "builder publish",
        "reporter HttpStatusPush(http://127.0.0.1:1/hook)",
        "reporter MailNotifier",
    }
    assert arrows == {f"{start} -> {end}: {label}" for start, end, label in drawn.edges()}
    assert "builder:unit -> scheduler:after-unit: triggers" in arrows
    assert "builder:package -> scheduler:docs: succeeds" in arrows
    assert "builder:unit -> reporter:MailNotifier: reports failing" in arrows
    assert "builder:publish -> reporter:HttpStatusPush(http://127.0.0.1:1/hook): reports all" in arrows
    assert "builder:publish -> reporter:MailNotifier: reports failing" not in arrows
    # And as text elsewhere
    assert "scheduler:on-change -> builder:unit (requests)" in str(drawn)
