"""The pipeline model (``flowbot/pipeline.py``, ``builder.py``, ``schedulers/``), built in Python as a notebook would.

A pipeline checks itself when it is made and reports every problem at once, each at the line (here:
of this file) of the object at fault. Schedulers turn changes and force requests into buildsets.
"""

from __future__ import annotations

import sys

import pytest

from flowbot import (
    AnyBranchScheduler,
    BoolParameter,
    Builder,
    Change,
    ForceScheduler,
    Git,
    GitPoller,
    Pipeline,
    Shell,
    SourceStamp,
    Step,
    Worker,
)
from flowbot.errors import ConfigError, ConfigErrors
from flowbot.launchers.local import LocalLauncher


def here() -> int:
    """The line of the caller, for checking that a problem points at the line that made the object."""
    return sys._getframe(1).f_lineno


def problems(error: ConfigError) -> list[str]:
    assert isinstance(error, ConfigErrors)
    return [e.problem for e in error.errors]


def renamed(worker: Worker, name: str) -> Worker:
    worker.name = name
    return worker


def sample(**changes: object) -> Pipeline:
    """A small valid pipeline, with any of its parts replaced."""
    parts: dict[str, object] = {
        "workers": [Worker("w1", secret="s1"), Worker("w2", secret="s2")],
        "schedulers": [
            AnyBranchScheduler("on-change", builders=["unit", "lint"]),
            ForceScheduler("force", builders=["unit"]),
        ],
        "builders": [
            Builder("unit", workers=["w1", "w2"], steps=[Shell("make", name="build"), Shell("make test", name="test")]),
            Builder("lint", workers=["w2"], steps=[Shell("ruff check", name="lint")]),
        ],
    }
    return Pipeline(**{**parts, **changes})


# -- checking --------------------------------------------------------------------------------------


def test_a_problem_points_at_the_line_that_made_the_object() -> None:
    line = here() + 1
    unit = Builder("unit", workers=["w1", "w3"], steps=[Shell("make")])
    with pytest.raises(ConfigErrors) as caught:
        sample(builders=[unit, Builder("lint", workers=["w2"], steps=[Shell("ruff check")])])

    (error,) = caught.value.errors
    assert (error.filename, error.lineno) == (__file__, line)
    assert str(error) == f"{__file__}:{line}: builder 'unit' names worker 'w3', which no worker declares"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"workers": [Worker("w1", secret="s"), Worker("w2", secret="s"), Worker("w2", secret="s")]},
            "duplicate worker name 'w2'",
        ),
        (
            {"schedulers": [ForceScheduler("force", builders=["unit"]), ForceScheduler("force", builders=["lint"])]},
            "duplicate scheduler name 'force'",
        ),
        (
            {
                "builders": [
                    Builder("unit", workers=["w1"], steps=[Shell("make")]),
                    Builder("unit", workers=["w2"], steps=[Shell("make")]),
                    Builder("lint", workers=["w2"], steps=[Shell("ruff check")]),
                ]
            },
            "duplicate builder name 'unit'",
        ),
        (
            {"schedulers": [AnyBranchScheduler("on-change", builders=["unit", "docs"])]},
            "scheduler 'on-change' names builder 'docs', which no builder defines",
        ),
        ({"schedulers": [ForceScheduler("force", builders=[])]}, "scheduler 'force' lists no builders"),
        ({"workers": [Worker("w2", secret="s")]}, "builder 'unit' names worker 'w1', which no worker declares"),
        (
            {
                "builders": [
                    Builder("unit", workers=["w1"], steps=[]),
                    Builder("lint", workers=["w2"], steps=[Shell("x")]),
                ]
            },
            "builder 'unit' has no steps",
        ),
        (
            {
                "builders": [
                    Builder("unit", workers=[], steps=[Shell("make")]),
                    Builder("lint", workers=["w2"], steps=[Shell("x")]),
                ]
            },
            "builder 'unit' lists no workers",
        ),
        (
            {
                "builders": [
                    Builder("unit", workers=["w1"], steps=[Shell("make"), "make test"]),
                    Builder("lint", workers=["w2"], steps=[Shell("x")]),
                ]
            },
            "builder 'unit' has 'make test' among its steps, which is not a Step",
        ),
        ({"workers": ["w1", Worker("w2", secret="s")]}, "workers must be Worker objects; got 'w1'"),
        (
            # renamed after it was made (in a notebook, say): the pipeline checks the name again
            {"workers": [Worker("w1", secret="s"), Worker("w2", secret="s"), renamed(Worker("ok", secret="s"), "a/b")]},
            "worker name 'a/b' must be a non-empty string without '/'",
        ),
        (
            {"workers": [Worker("w1", launcher=LocalLauncher(), max_instances=0), Worker("w2", secret="s")]},
            "worker 'w1': max_instances must be a whole number of at least 1; got 0",
        ),
        (
            {"workers": [Worker("w1", launcher=LocalLauncher(), start_timeout="5m"), Worker("w2", secret="s")]},
            "worker 'w1': start_timeout must be a number of seconds; got '5m'",
        ),
        (
            {
                "workers": [
                    Worker("w1", launcher=LocalLauncher(), max_instances=2),
                    Worker("w2", secret="s"),
                    Worker("w1-2", secret="s"),
                ]
            },
            "worker 'w1-2' has the name of an instance of worker 'w1'",
        ),
        (
            {"workers": [Worker("w1", launcher="docker"), Worker("w2", secret="s")]},
            "worker 'w1': launcher must be a flowbot.Launcher; got 'docker'",
        ),
        (
            {"workers": [Worker("w1", secret="s"), Worker("w2", secret="s"), Worker("w 3", launcher=LocalLauncher())]},
            "worker 'w 3': a worker with a launcher needs a name of letters, digits",
        ),
    ],
)
def test_each_mistake_is_reported_in_words(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigErrors) as caught:
        sample(**changes)

    assert any(p.startswith(problem) for p in problems(caught.value)), problems(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigErrors) as caught:
        Pipeline(
            workers=[Worker("w1", secret="s"), Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["unit", "docs"])],
            builders=[Builder("unit", workers=["w1", "w9"], steps=[])],
        )

    assert sorted(problems(caught.value)) == sorted(
        [
            "duplicate worker name 'w1'",
            "scheduler 'force' names builder 'docs', which no builder defines",
            "builder 'unit' names worker 'w9', which no worker declares",
            "builder 'unit' has no steps",
        ]
    )
    assert len(str(caught.value).splitlines()) == 4


def test_a_worker_given_a_list_of_names_is_a_config_error_at_its_line() -> None:
    # An easy slip: Builder takes a list of workers, Worker takes one name
    with pytest.raises(ConfigError) as caught:
        line = here() + 1
        Worker(["w1", "w2"], secret="s")  # type: ignore[arg-type]

    assert (caught.value.filename, caught.value.lineno) == (__file__, line)
    assert caught.value.problem == ("Worker: name must be a non-empty string without '/', not ['w1', 'w2'] (list)")
    with pytest.raises(
        ConfigError, match=r"test_pipeline.py:\d+: Worker: name must be a non-empty string without '/', not 'a/b'"
    ):
        Worker("a/b", secret="s")


def test_lookups_find_parts_by_name() -> None:
    pipeline = sample()

    assert pipeline.builder("lint").workers == ["w2"]
    assert pipeline.builder("docs") is None
    assert pipeline.worker("w1").secret == "s1"
    assert pipeline.worker("w9") is None
    assert pipeline.force_scheduler_for("unit").name == "force"
    # lint is only built on changes, so nobody may force it
    assert pipeline.force_scheduler_for("lint") is None


# -- builders and steps -----------------------------------------------------------------------------


def test_repeated_step_names_get_a_number_from_2() -> None:
    builder = Builder(
        "unit",
        workers=["w1"],
        steps=[
            Shell("make", name="build"),
            Shell("make test", name="test"),
            Shell("make test2", name="test"),
            Shell("make test3", name="test"),
            Shell("true"),
            Shell("true"),
        ],
    )

    assert builder.step_names == ["build", "test", "test_2", "test_3", "shell", "shell_2"]
    # The steps themselves keep the names they were given
    assert [step.name for step in builder.steps] == ["build", "test", "test", "test", "shell", "shell"]


def test_a_renamed_repeat_never_collides_with_a_step_named_like_it() -> None:
    builder = Builder(
        "unit",
        workers=["w1"],
        steps=[
            Shell("pytest a", name="test"),
            Shell("pytest b", name="test"),
            Shell("pytest c", name="test_2"),
        ],
    )

    assert len(set(builder.step_names)) == 3


def test_a_step_without_a_name_gets_its_kinds_name() -> None:
    class Upload(Step):
        default_name = "upload"

    assert Upload().name == "upload"
    assert Shell("make").name == "shell"


@pytest.mark.parametrize("command", ["", "   ", []])
def test_a_shell_step_needs_a_command(command: str | list[str]) -> None:
    with pytest.raises(ValueError, match="Shell needs a command"):
        Shell(command)


def test_describe_shows_the_graph() -> None:
    pipeline = sample()

    assert pipeline.describe() == "\n".join(
        [
            "Pipeline",
            "  workers: w1, w2",
            "  schedulers:",
            "    on-change (AnyBranchScheduler) -> unit, lint",
            "    force (ForceScheduler) -> unit",
            "  builders:",
            "    unit on w1, w2: build -> test",
            "    lint on w2: lint",
            "  edges:",
            "    scheduler:on-change -> builder:unit (requests)",
            "    scheduler:on-change -> builder:lint (requests)",
            "    scheduler:force -> builder:unit (requests)",
        ]
    )
    assert str(pipeline) == pipeline.describe()
    assert repr(pipeline) == "Pipeline(workers=2, schedulers=2, builders=2)"


# -- schedulers -------------------------------------------------------------------------------------


def test_a_change_makes_one_buildset_for_all_the_schedulers_builders() -> None:
    scheduler = AnyBranchScheduler("on-change", builders=["unit", "lint"], properties={"ci": True}, priority=3)
    change = Change(
        branch="feature/x",
        revision="1a2b3c",
        repository="https://example.org/repo.git",
        project="demo",
        codebase="app",
        author="alice",
        id=7,
        properties={"ticket": 12},
    )

    classification = scheduler.classify(change)
    spec = scheduler.changes_buildset([change])

    assert spec.scheduler == "on-change"
    assert spec.builders == ("unit", "lint")
    assert spec.sourcestamps == (
        SourceStamp(
            codebase="app",
            repository="https://example.org/repo.git",
            branch="feature/x",
            revision="1a2b3c",
            project="demo",
        ),
    )
    assert spec.properties == {
        "ci": (True, "Scheduler"),
        "ticket": (12, "Change"),
        "scheduler": ("on-change", "Scheduler"),
    }
    assert spec.priority == 3
    assert spec.reason == "on-change: change 1a2b3c by alice on feature/x"
    assert spec.change_ids == (7,)
    # Every branch has its own tree-stable timer
    assert (classification.important, classification.key) == (True, "feature/x")


def test_force_builds_the_builders_asked_for_with_the_source_given() -> None:
    scheduler = ForceScheduler("force", builders=["unit", "lint"], params=[BoolParameter("verbose")])

    spec = scheduler.force(
        ["lint"], reason="flaky?", branch="main", revision="abc", owner="bob", properties={"verbose": "yes"}
    )

    assert spec.builders == ("lint",)
    assert spec.sourcestamps == (SourceStamp(branch="main", revision="abc"),)
    assert spec.reason == "flaky? (forced by bob)"
    assert spec.properties == {
        "verbose": (True, "Force Build Form"),
        "owner": ("bob", "Force Build Form"),
        "reason": ("flaky?", "Force Build Form"),
        "scheduler": ("force", "Scheduler"),
    }
    # Without a list it forces all its builders
    assert scheduler.force().builders == ("unit", "lint")
    assert scheduler.force().reason == "forced"


def test_force_refuses_a_builder_it_does_not_list() -> None:
    scheduler = ForceScheduler("force", builders=["unit"])

    with pytest.raises(ValueError, match="does not list builder"):
        scheduler.force(["unit", "deploy"])


def test_reporters_must_be_reporters_naming_known_builders():
    from flowbot import Builder, HttpStatusPush, Shell, Worker

    with pytest.raises(ConfigErrors) as error:
        Pipeline(
            workers=[Worker("w", secret="s")],
            builders=[Builder("unit", workers=["w"], steps=[Shell("true")])],
            reporters=[HttpStatusPush("http://127.0.0.1:1/", builders=["unti"]), "mail"],
        )
    text = str(error.value)
    assert "reporter 'HttpStatusPush(http://127.0.0.1:1/)' names builder 'unti', which no builder defines" in text
    assert "reporters must be Reporter objects; got 'mail'" in text


def test_checkconfig_says_when_git_steps_cannot_get_their_codebases_revisions() -> None:
    # Two pollers of two repositories, without codebases, feeding a builder that checks out both:
    # every build would check out one revision in both
    sources = [GitPoller("/srv/git/app.git", name="app"), GitPoller("/srv/git/lib.git", name="lib")]
    line = here() + 1
    both = Builder("unit", workers=["w1"], steps=[Git("/srv/git/app.git"), Git("/srv/git/lib.git", workdir="lib")])
    with pytest.raises(ConfigErrors) as caught:
        sample(sources=sources, builders=[both, Builder("lint", workers=["w2"], steps=[Shell("ruff check")])])
    (error,) = caught.value.errors
    assert (error.filename, error.lineno) == (__file__, line)
    assert error.problem == (
        "builder 'unit' checks out /srv/git/app.git and /srv/git/lib.git as the same codebase '', so both would "
        "get one revision: give each Git step its own codebase=, and each repository's source the same"
    )

    # A Git step of a codebase nothing provides
    named = Builder("unit", workers=["w1"], steps=[Git("/srv/git/app.git", codebase="app")])
    with pytest.raises(ConfigErrors) as caught:
        sample(builders=[named, Builder("lint", workers=["w2"], steps=[Shell("ruff check")])])
    assert problems(caught.value) == [
        "builder 'unit' checks out codebase 'app', which no source makes changes of and no scheduler lists in its "
        "codebases"
    ]

    # With codebases on the sources and the steps, all is well; a scheduler's codebases provide too
    sources = [
        GitPoller("/srv/git/app.git", name="app", codebase="app"),
        GitPoller("/srv/git/lib.git", name="lib", codebase="lib"),
    ]
    steps = [Git("/srv/git/app.git", codebase="app"), Git("/srv/git/lib.git", codebase="lib", workdir="lib")]
    lint = Builder("lint", workers=["w2"], steps=[Shell("ruff check")])
    sample(sources=sources, builders=[Builder("unit", workers=["w1"], steps=steps), lint])
    schedulers = [AnyBranchScheduler("on-change", builders=["unit"], codebases={"app": {}, "lib": {"branch": "main"}})]
    sample(schedulers=schedulers, builders=[Builder("unit", workers=["w1"], steps=steps), lint])
