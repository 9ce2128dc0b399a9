"""Loading a pipeline file (``flowbot/config.py``): it loads as written, or the error names file, line and problem.

Line numbers are found in the source by a marker, so each assertion says which line a user would be
sent to.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from flowbot_worker.curve import create_key, load_key_pair

from flowbot import AnyBranchScheduler, ForceScheduler, Pipeline, Shell
from flowbot.config import load_pipeline, load_source
from flowbot.errors import ConfigError, ConfigErrors

from .support import SAMPLE_PIPELINE

FILENAME = "/masters/demo/pipeline.py"


def line_of(source: str, marker: str) -> int:
    """The 1-based number of the first line of ``source`` containing ``marker``."""
    return next(number for number, line in enumerate(source.splitlines(), 1) if marker in line)


def load_error(source: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_source(source, FILENAME)
    return caught.value


def test_the_sample_pipeline_loads_as_written(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(SAMPLE_PIPELINE)

    pipeline = load_pipeline(tmp_path)

    assert isinstance(pipeline, Pipeline)
    assert [(w.name, w.secret) for w in pipeline.workers] == [("w1", "change-me"), ("w2", "other")]
    assert [(type(s), s.name, s.builders) for s in pipeline.schedulers] == [
        (AnyBranchScheduler, "on-change", ["unit", "lint"]),
        (ForceScheduler, "force", ["unit", "lint"]),
    ]
    unit, lint = pipeline.builders
    assert (unit.name, unit.workers, unit.step_names) == ("unit", ["w1", "w2"], ["test", "report"])
    assert (lint.name, lint.workers, lint.step_names) == ("lint", ["w2"], ["lint"])
    assert all(isinstance(step, Shell) for step in unit.steps + lint.steps)
    assert unit.steps[0].command == "echo testing $FLOWBOT_REVISION"
    assert unit.steps[1].command == ["python3", "-c", "print('done')"]
    # Each object remembers where it was written, for later errors
    assert (lint.defined_at.filename, lint.defined_at.lineno) == (
        str(tmp_path / "pipeline.py"),
        line_of(SAMPLE_PIPELINE, 'Builder("lint"'),
    )


def test_a_missing_pipeline_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(tmp_path)

    assert caught.value.filename == str(tmp_path / "pipeline.py")
    assert "no pipeline.py or pipeline.ipynb here" in str(caught.value)


def test_a_syntax_error_names_its_line() -> None:
    source = textwrap.dedent("""\
        from flowbot import Pipeline, Worker

        workers = [Worker("w1", secret="s")]
        pipeline = Pipeline(workers=workers) if workers
    """)

    error = load_error(source)

    assert (error.filename, error.lineno) == (FILENAME, line_of(source, "if workers"))
    assert str(error).startswith(f"{FILENAME}:{error.lineno}: syntax error: ")


def test_an_exception_while_running_names_the_line_that_raised() -> None:
    source = textwrap.dedent("""\
        from flowbot import Pipeline

        def workers_from_inventory():
            raise RuntimeError("inventory server unreachable")

        pipeline = Pipeline(workers=workers_from_inventory())
    """)

    error = load_error(source)

    assert (error.filename, error.lineno) == (FILENAME, line_of(source, "raise RuntimeError"))
    assert str(error) == f"{FILENAME}:{error.lineno}: RuntimeError: inventory server unreachable"


def test_a_bad_argument_caught_inside_flowbot_names_the_users_line() -> None:
    source = textwrap.dedent("""\
        from flowbot import Builder, Shell

        steps = [
            Shell("make"),
            Shell([]),
        ]
    """)

    error = load_error(source)

    assert (error.filename, error.lineno) == (FILENAME, line_of(source, "Shell([])"))
    assert "ValueError: Shell needs a command" in str(error)


def test_a_file_without_a_pipeline_says_so() -> None:
    error = load_error("from flowbot import Pipeline\n\nmy_pipeline = Pipeline()\n")

    assert error.filename == FILENAME
    assert "defines no module-level `pipeline`" in str(error)


def test_a_pipeline_of_the_wrong_type_says_what_it_got() -> None:
    error = load_error("pipeline = {'workers': []}\n")

    assert error.filename == FILENAME
    assert "`pipeline` must be a flowbot.Pipeline, not dict" in str(error)


#: A pipeline with one of each problem the pipeline finds itself; each marker is on the line at fault.
BROKEN = textwrap.dedent("""\
    from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler, ForceScheduler

    pipeline = Pipeline(
        workers=[
            Worker("w1", secret="s"),
            Worker("w1", secret="s"),  # duplicate worker
        ],
        schedulers=[
            AnyBranchScheduler("on-change", builders=["unit", "docs"]),  # unknown builder
            ForceScheduler("on-change", builders=["unit"]),  # duplicate scheduler
        ],
        builders=[
            Builder("unit", workers=["w1"], steps=[Shell("make test")]),
            Builder("unit", workers=["w1"], steps=[Shell("make")]),  # duplicate builder
            Builder("lint", workers=["w9"], steps=[Shell("ruff check")]),  # undeclared worker
            Builder("empty", workers=["w1"], steps=[]),  # no steps
        ],
    )
""")


def test_every_problem_is_reported_together_with_its_line() -> None:
    error = load_error(BROKEN)

    assert isinstance(error, ConfigErrors)
    found = {(e.lineno, e.problem) for e in error.errors}
    assert found == {
        (line_of(BROKEN, "# duplicate worker"), "duplicate worker name 'w1'"),
        (line_of(BROKEN, "# unknown builder"), "scheduler 'on-change' names builder 'docs', which no builder defines"),
        (line_of(BROKEN, "# duplicate scheduler"), "duplicate scheduler name 'on-change'"),
        (line_of(BROKEN, "# duplicate builder"), "duplicate builder name 'unit'"),
        (line_of(BROKEN, "# undeclared worker"), "builder 'lint' names worker 'w9', which no worker declares"),
        (line_of(BROKEN, "# no steps"), "builder 'empty' has no steps"),
    }
    assert all(e.filename == FILENAME for e in error.errors)
    # The message shows every problem, one per line, each as file:line: problem
    assert sorted(str(error).splitlines()) == sorted(str(e) for e in error.errors)
    assert f"{FILENAME}:{line_of(BROKEN, '# no steps')}: builder 'empty' has no steps" in str(error).splitlines()


def test_a_scheduler_spread_over_lines_is_reported_at_the_line_of_its_builders() -> None:
    source = textwrap.dedent("""\
        from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler

        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[
                AnyBranchScheduler(
                    "on-change",
                    builders=["nope"],
                ),
            ],
            builders=[Builder("unit", workers=["w1"], steps=[Shell("true")])],
        )
    """)

    error = load_error(source)

    assert str(error) == (
        f"{FILENAME}:{line_of(source, 'nope')}: scheduler 'on-change' names builder 'nope', which no builder defines"
    )


# -- CURVE keys ------------------------------------------------------------------------------------

CURVE_PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell
pipeline = Pipeline(  # the pipeline
    workers=[
        Worker("w1", secret="s", public_key={w1!r}),  # w1
        Worker("w2", secret="s", public_key={w2!r}),  # w2
    ],
    builders=[Builder("b", workers=["w1", "w2"], steps=[Shell("true")])],
    curve_key={curve_key!r},  # curve_key
)
"""


def curve_pipeline(tmp_path: Path, **values: object) -> str:
    source = CURVE_PIPELINE.format(**{"w1": None, "w2": None, "curve_key": None, **values})
    (tmp_path / "pipeline.py").write_text(source)
    return source


def test_a_curve_key_beside_the_pipeline_file_is_read_wherever_the_master_is_started_from(tmp_path, monkeypatch):
    # Given a master directory with its key pair and a worker's public key
    master, worker = create_key(tmp_path, "master"), create_key(tmp_path / "elsewhere", "w1")
    w1 = load_key_pair(worker[1]).public
    curve_pipeline(tmp_path, w1=w1, curve_key="master.key_secret")
    monkeypatch.chdir(tmp_path / "elsewhere")

    # When it is loaded from another directory
    pipeline = load_pipeline(tmp_path)

    # Then the key named relative to the pipeline file is the one read
    assert pipeline.curve == load_key_pair(master[1])
    assert pipeline.worker("w1").public_key == w1
    assert pipeline.curve.secret not in repr(pipeline.curve)


@pytest.mark.parametrize(
    ("values", "marker", "problem"),
    [
        ({"w1": "short"}, "# w1", "worker 'w1': public_key: a CURVE key is 40 characters of Z85 text; this one has 5"),
        ({"w1": "~" * 40}, "# w1", "worker 'w1': public_key: a CURVE key is Z85 text; this one has characters"),
        ({"w1": "#" * 40}, "# w1", "worker 'w1': public_key: a CURVE key is Z85 text; this one has characters"),
        ({"curve_key": "nowhere.key_secret"}, "# curve_key", "curve_key: {dir}/nowhere.key_secret: cannot read"),
        ({"curve_key": "master.key"}, "# curve_key", "curve_key: {dir}/master.key: no secret-key in it"),
        ({"curve_key": "pipeline.py"}, "# curve_key", "curve_key: {dir}/pipeline.py: not a CURVE key file"),
        ({"w1": "{key}"}, "# w1", "worker 'w1' has a public_key, but the pipeline has no curve_key"),
        ({"w1": "{key}", "w2": "{key}", "curve_key": "master.key_secret"}, "# w2", "workers 'w1' and 'w2' share"),
    ],
)
def test_a_bad_curve_key_is_refused_with_file_line_and_problem(tmp_path, values, marker, problem) -> None:
    # Given a pipeline whose keys are wrong in one way
    create_key(tmp_path, "master")
    key = load_key_pair(tmp_path / "master.key_secret").public
    source = curve_pipeline(tmp_path, **{name: value.replace("{key}", key) for name, value in values.items()})

    # When it is checked
    with pytest.raises(ConfigError) as caught:
        load_pipeline(tmp_path)

    # Then the error names the file, the line at fault and what is wrong
    (error,) = caught.value.errors
    assert (error.filename, error.lineno) == (str(tmp_path / "pipeline.py"), line_of(source, marker))
    assert error.problem.startswith(problem.format(dir=tmp_path)), error.problem


def test_a_key_file_whose_halves_do_not_belong_together_is_refused(tmp_path) -> None:
    # Given a secret key file edited to hold another pair's public key
    create_key(tmp_path, "master")
    create_key(tmp_path, "other")
    secret = tmp_path / "master.key_secret"
    other = load_key_pair(tmp_path / "other.key_secret").public
    text = secret.read_text()
    secret.write_text(text.replace(load_key_pair(secret).public, other))
    curve_pipeline(tmp_path, curve_key="master.key_secret")

    # Then loading the pipeline says so
    with pytest.raises(ConfigError, match="its public-key is not the public half of its secret-key"):
        load_pipeline(tmp_path)
