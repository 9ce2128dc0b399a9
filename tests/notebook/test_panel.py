"""The live panel over an embedded master, as a notebook user drives it (the widget's state, which
its module draws; tests/notebook/test_panel_browser.py sees it drawn in JupyterLab and marimo)."""

from __future__ import annotations

import asyncio
import re
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
    StringParameter,
    Trigger,
    Triggerable,
    Worker,
)
from flowbot.errors import NotFound
from flowbot.record_json import build_detail_json, build_json


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


def chips(panel, builder: str) -> list[str]:
    """A builder's recent builds as the panel shows them, newest first: ``#2 SUCCESS``, ``#3 running``."""
    (row,) = [row for row in panel.overview["builders"] if row["name"] == builder]
    return [f"#{b['number']} {b['result'] or 'running'}" for b in row["builds"]]


def workers(panel) -> dict[str, dict]:
    return {worker["name"]: worker for worker in panel.overview["workers"]}


async def pick(panel, label: str) -> int:
    """Pick the build whose label starts with ``label`` once it is offered, as the user does in the module."""
    await until(lambda: any(option["label"].startswith(label) for option in panel.builds))
    build = next(option["id"] for option in panel.builds if option["label"].startswith(label))
    panel.selected = build
    return build


async def until(predicate, timeout: float = 60.0) -> None:
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
        await until(lambda: panel.overview.get("builders") and chips(panel, "unit") == [])
        assert [f["name"] for f in panel.forms["unit"]["fields"]] == ["reason", "branch", "revision", "jobs"]

        # When the user forces unit with jobs=7 through the form (the module sets the command)
        panel.command = {"action": "force", "builder": "unit", "values": {"jobs": "7"}, "nonce": 1}
        await until(lambda: "forced unit" in panel.message.get("text", ""))
        await master.wait_idle(timeout=30)

        # Then the panel shows it, green, and its log
        await until(lambda: chips(panel, "unit") == ["#1 SUCCESS"])
        await pick(panel, "unit #1")
        await until(lambda: "jobs=7" in panel.log)

        # And a long build can be stopped from it, its log tailing live meanwhile
        await panel.force("slow", {})
        await until(lambda: any("running" in option["label"] for option in panel.builds))
        running = await pick(panel, "slow #1 (running")
        await until(lambda: "started" in panel.log and panel.build.get("running"))
        panel.command = {"action": "stop", "build": running, "nonce": 2}
        await until(lambda: chips(panel, "slow") == ["#1 CANCELLED"])
        await until(lambda: not panel.build["running"])  # no Stop for a finished build

        # And a worker paused through the master's API shows as paused, with why (the module escapes it)
        await master.pause_worker("w1", "<b>disk</b> full")
        await until(
            lambda: workers(panel)["w1"]["paused"] and workers(panel)["w1"]["paused_reason"] == "<b>disk</b> full"
        )
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
        await until(lambda: list(panel.forms) == ["unit", "slow"])
        # The cell is run again with a new builder, which the panel's force form then offers
        pipeline(master=master, extra_builder=True)
        await until(lambda: list(panel.forms) == ["unit", "slow", "docs"])
        assert [row["name"] for row in panel.overview["builders"]] == ["unit", "slow", "docs"]
        assert await panel.force("docs", {})
        await master.wait_idle(timeout=30)
        (build,) = [build_json(b) for b in await master.store.builds.query(builder="docs")]
        assert build["result"] == "SUCCESS"
        panel.close()
        # A cell with a mistake raises where it is, and the master keeps its pipeline
        with pytest.raises(flowbot.ConfigError, match="names worker 'nobody'"):
            Pipeline(
                workers=[Worker("w1", secret="s")],
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
        log_lines = master.store.logs.lines
        master.store.logs.lines = lambda *args, **kwargs: whole_logs_read.append(args) or log_lines(*args, **kwargs)

        # When it is picked in the panel
        panel = master.panel()
        await until(lambda: panel.builds)
        await pick(panel, "long #1")
        await until(lambda: "100000" in panel.log)

        # Then the panel shows the last lines, read from the end of the log only
        shown = re.sub(r"<[^>]+>", "", panel.log).split("\n")
        assert len(shown) == 200 and shown[-2] == "100000" and shown[0] == "99802"
        assert whole_logs_read == []
        panel.close()
    finally:
        await master.stop()


def health_pipeline() -> Pipeline:
    return Pipeline(
        workers=[Worker("w1", secret="nb"), Worker("w2", secret="nb")],
        schedulers=[ForceScheduler("force", builders=["unit", "broken", "waiting"])],
        builders=[
            Builder("unit", workers=["w1"], steps=[Shell("echo fine", name="test")]),
            Builder("broken", workers=["w1"], steps=[Shell("echo ok", name="prepare"), Shell("exit 3", name="check")]),
            Builder("waiting", workers=["w2"], steps=[Shell("true")]),
        ],
    )


async def test_the_panel_colours_results_and_shows_the_queue_steps_and_worker_health(tmp_path):
    # Given a master with w1 running and w2 offline, a build that passes, one that fails and one waiting for w2
    master = flowbot.Master(health_pipeline(), db=f"sqlite:///{tmp_path / 'nb.sqlite'}")
    await master.start()
    try:
        await master.start_local_workers(["w1"])
        panel = master.panel()
        for builder in ("unit", "broken", "waiting"):
            await master.force(builder, reason=f"try {builder}")

        # Then builds show with their result (which the module colours), and a builder without builds says so
        await until(lambda: chips(panel, "broken") == ["#1 FAILURE"] and chips(panel, "unit") == ["#1 SUCCESS"])
        assert chips(panel, "waiting") == []
        # And the queue holds the request waiting for w2
        assert [(r["builder"], r["reason"]) for r in panel.overview["queue"]] == [("waiting", "try waiting")]
        # And w1 is connected while w2 is offline
        assert workers(panel)["w1"]["connected"] and workers(panel)["w1"]["seen"] is not None
        assert not workers(panel)["w2"]["connected"]
        # And the newest build's steps are listed with their results, numbered from 1 as on the web page
        await until(lambda: [s["name"] for s in panel.build.get("steps", [])] == ["prepare", "check"])
        assert [(s["number"], s["name"], s["result"]) for s in panel.build["steps"]] == [
            (1, "prepare", "SUCCESS"),
            (2, "check", "FAILURE"),
        ]

        # When w1 goes away
        await master.shutdown_worker("w1", graceful=False)

        # Then it shows offline too
        await until(lambda: not workers(panel)["w1"]["connected"])
        panel.close()
    finally:
        await master.stop()


async def test_the_panel_shows_the_newest_build_and_follows_new_ones_until_one_is_picked(tmp_path):
    # Given a master with a finished build, and a panel opened after it
    master = flowbot.Master(pipeline(), db=f"sqlite:///{tmp_path / 'nb.sqlite'}")
    await master.start()
    try:
        await master.start_local_workers()
        await master.force("unit", properties={"jobs": 1})
        await master.wait_idle(timeout=30)
        panel = master.panel()

        # Then that build is shown, its steps and its log, without picking anything
        await until(lambda: "jobs=1" in panel.log)
        assert (panel.build["number"], panel.build["result"]) == (1, "SUCCESS") and panel.follow

        # And a new build is followed as it comes
        await master.force("unit", properties={"jobs": 2})
        await until(lambda: "jobs=2" in panel.log and (panel.build["number"], panel.build["result"]) == (2, "SUCCESS"))

        # When the user picks the first build, later builds leave it in view
        first = await pick(panel, "unit #1 ")
        await until(lambda: "jobs=1" in panel.log)
        assert not panel.follow
        await master.force("unit", properties={"jobs": 3})
        await master.wait_idle(timeout=30)
        await until(lambda: any(option["label"].startswith("unit #3 (SUCCESS") for option in panel.builds))
        assert panel.selected == first and "jobs=1" in panel.log

        # And following again shows the newest
        panel.follow = True
        await until(lambda: "jobs=3" in panel.log)
        panel.close()
    finally:
        await master.stop()


async def test_a_rarely_built_builder_shows_its_builds_among_many_of_another(tmp_path):
    # Given one build of docs, then 51 of unit
    master = flowbot.Master(pipeline(extra_builder=True), db=f"sqlite:///{tmp_path / 'nb.sqlite'}")
    await master.start()
    try:
        await master.start_local_workers()
        for builder in ["docs"] + ["unit"] * 51:
            await master.force(builder)
            await master.wait_idle(timeout=30)

        # When the panel shows the builders
        panel = master.panel(recent=3)
        await until(lambda: panel.overview.get("builders"))

        # Then docs shows its build, and unit its three newest
        assert chips(panel, "docs") == ["#1 SUCCESS"] and chips(panel, "slow") == []
        assert chips(panel, "unit") == ["#51 SUCCESS", "#50 SUCCESS", "#49 SUCCESS"]
        panel.close()
    finally:
        await master.stop()


async def test_the_force_form_leaves_empty_fields_out_so_the_scheduler_can_say_what_is_required(tmp_path):
    # Given a force scheduler with a required number, an optional number and an optional text, none with defaults
    params = [IntParameter("jobs", required=True), IntParameter("retries"), StringParameter("note")]
    form = Pipeline(
        workers=[Worker("w1", secret="nb")],
        schedulers=[ForceScheduler("force", builders=["unit"], params=params)],
        builders=[Builder("unit", workers=["w1"], steps=[Shell("true")])],
    )
    master = flowbot.Master(form, db=f"sqlite:///{tmp_path / 'nb.sqlite'}")
    await master.start()
    try:
        await master.start_local_workers()
        panel = master.panel()

        # When the form is sent empty (as the module sends it), then with the number filled in
        empty = {"reason": "", "branch": "", "revision": "", "jobs": "", "retries": "", "note": ""}
        assert await panel.force("unit", empty) == []
        assert "jobs is required" in panel.message["text"] and panel.message["error"]
        assert len(await panel.force("unit", {**empty, "jobs": "3"})) == 1
        await master.wait_idle(timeout=30)

        # Then the build has that number, and no value for the fields left empty
        (build,) = [build_json(b) for b in await master.store.builds.query()]
        properties = (build_detail_json(await master.store.builds.get(build["id"])))["properties"]
        assert properties["jobs"][0] == 3 and "retries" not in properties and "note" not in properties
        panel.close()
    finally:
        await master.stop()


async def test_a_new_panel_of_a_master_closes_the_one_before_which_stops_following_it(tmp_path):
    # Given a master and its panel, and the cell that showed it run again
    master = flowbot.Master(pipeline(), db=f"sqlite:///{tmp_path / 'nb.sqlite'}")
    await master.start()
    try:
        await master.start_local_workers()
        old = master.panel()
        await until(lambda: old.overview.get("builders") and chips(old, "unit") == [])
        new = master.panel()

        # Then the old panel is closed, and only the new one follows builds
        assert old.comm is None
        await master.force("unit")
        await master.wait_idle(timeout=30)
        await until(lambda: chips(new, "unit") == ["#1 SUCCESS"])
        assert chips(old, "unit") == []

        # And once the new one is closed too, the master streams no live log lines for panels
        assert master.events.wants("log")
        new.close()
        assert not master.events.wants("log")
    finally:
        await master.stop()


async def test_the_log_shows_ansi_colours_and_marks_the_masters_own_lines(tmp_path):
    coloured = Pipeline(
        workers=[Worker("w1", secret="nb")],
        schedulers=[ForceScheduler("force", builders=["colour"])],
        builders=[Builder("colour", workers=["w1"], steps=[Shell("printf '\\033[31mred <b>\\033[0m plain\\n' >&2")])],
    )
    master = flowbot.Master(coloured, db=f"sqlite:///{tmp_path / 'nb.sqlite'}")
    await master.start()
    try:
        await master.start_local_workers()
        panel = master.panel()
        await master.force("colour")
        await master.wait_idle(timeout=30)
        await until(lambda: "plain" in panel.log and "program finished" in panel.log)  # the whole log is in
        # The colour is a style, the text is escaped, and stderr and the master's header lines are marked
        # (the header line quotes the command, whose text holds "\033[31m" but no escape character)
        output = re.search(r'<span class="e">.*</span>', panel.log)
        assert "\x1b" not in panel.log and output and "[31m" not in output.group(0), panel.log
        assert re.search(r'<span style="color: ?#[0-9a-f]+">red &lt;b&gt;</span>', panel.log), panel.log
        assert '<span class="e">' in panel.log and '<span class="h">' in panel.log
        assert panel.log.startswith('<span class="h">shell: printf'), panel.log  # from its first line
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


async def test_the_panel_shows_a_builders_newest_matrix_cell_by_cell_and_history_a_column_per_axis(tmp_path):
    # Given an embedded master whose builder has a python x os matrix, one cell of which fails
    db = f"sqlite:///{tmp_path / 'nb.sqlite'}"
    matrix = flowbot.Matrix(axes={"python": ["3.12", "3.13"], "os": ["linux", "mac"]})
    master = flowbot.Master(
        Pipeline(
            workers=[Worker("w1", secret="nb")],
            schedulers=[ForceScheduler("force", builders=["test"])],
            builders=[
                Builder(
                    "test",
                    workers=["w1"],
                    steps=[Shell(Interpolate("[ %(prop:python)s-%(prop:os)s != 3.13-mac ]"), name="check")],
                    matrix=matrix,
                )
            ],
        ),
        db=db,
    )
    await master.start()
    try:
        await master.start_local_workers()
        panel = master.panel()

        # When it is forced and every cell has run
        await master.force("test")
        await master.wait_idle(timeout=60)

        # Then the panel shows the matrix, each cell with its values, result and build
        def shown() -> dict | None:
            (row,) = [row for row in panel.overview.get("builders", []) if row["name"] == "test"]
            return row["matrix"] if row["matrix"] and row["matrix"]["complete"] else None

        await until(shown, timeout=60)
        grid = shown()
        assert grid["axes"] == {"python": ["3.12", "3.13"], "os": ["linux", "mac"]}
        assert grid["result"] == "FAILURE"
        assert [(c["values"]["python"], c["values"]["os"], c["result"]) for c in grid["cells"]] == [
            ("3.12", "linux", "SUCCESS"),
            ("3.12", "mac", "SUCCESS"),
            ("3.13", "linux", "SUCCESS"),
            ("3.13", "mac", "FAILURE"),
        ]
        assert all(c["build_id"] for c in grid["cells"])
        panel.close()
    finally:
        await master.stop()

    # And History.builds() has the matrix's id and a column per axis
    with flowbot.History(db) as history:
        builds = history.builds()
    builds = builds[builds["result"] != "RETRY"]  # a worker a loaded machine kept silent too long: run again
    assert builds["matrix_id"].tolist() == [grid["id"]] * 4
    by_cell = builds.set_index(["python", "os"])["result"].astype(str).to_dict()
    assert by_cell == {
        ("3.12", "linux"): "SUCCESS",
        ("3.12", "mac"): "SUCCESS",
        ("3.13", "linux"): "SUCCESS",
        ("3.13", "mac"): "FAILURE",
    }
    assert builds.groupby("python")["result"].apply(lambda r: (r == "FAILURE").sum()).to_dict() == {
        "3.12": 0,
        "3.13": 1,
    }


async def test_a_build_waiting_for_approval_shows_its_form_and_is_approved_from_the_panel(tmp_path):
    # Given a build that waits for approval, with a form
    approval = flowbot.Approval("ship it", prompt="Ship?", fields=[StringParameter("channel", required=True)])
    master = flowbot.Master(
        Pipeline(
            workers=[Worker("w1", secret="nb")],
            schedulers=[ForceScheduler("force", builders=["release"])],
            builders=[
                Builder("release", workers=["w1"], steps=[approval, Shell(Interpolate("echo to %(prop:channel)s"))])
            ],
        ),
        db=f"sqlite:///{tmp_path / 'nb.sqlite'}",
    )
    await master.start()
    try:
        await master.start_local_workers()
        panel = master.panel()
        await panel.force("release", {})
        build = await pick(panel, "release #1")
        await until(lambda: (panel.build.get("approval") or {}).get("prompt") == "Ship?")
        assert [f["name"] for f in panel.build["approval"]["fields"]] == ["channel"]

        # When the user approves without the required field, then with it (the module sets the command)
        panel.command = {"action": "approve", "build": build, "values": {"channel": ""}, "nonce": 1}
        await until(lambda: panel.message.get("text") == "channel is required")
        panel.command = {
            "action": "approve",
            "build": build,
            "values": {"channel": "beta"},
            "comment": "ok",
            "nonce": 2,
        }

        # Then the build goes on with the value, and the form goes away
        await until(lambda: chips(panel, "release") == ["#1 SUCCESS"], timeout=60)
        await until(lambda: panel.build.get("approval") is None and "to beta" in panel.log)
        assert panel.build["steps"][0]["summary"] == "approved by the notebook: ok"
        panel.close()
    finally:
        await master.stop()
