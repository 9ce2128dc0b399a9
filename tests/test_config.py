"""Loading a pipeline file (``flowbot/config.py``): it loads as written, or the error names file, line and problem.

Line numbers are found in the source by a marker, so each assertion says which line a user would be
sent to.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

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
    assert unit.steps[1].command == ["python", "-c", "print('done')"]
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

        workers = [Worker("w1")]
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
            Worker("w1"),
            Worker("w1"),  # duplicate worker
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


def test_a_scheduler_spread_over_lines_is_reported_at_its_first_line() -> None:
    source = textwrap.dedent("""\
        from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler

        pipeline = Pipeline(
            workers=[Worker("w1")],
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
        f"{FILENAME}:{line_of(source, 'AnyBranchScheduler(')}: "
        "scheduler 'on-change' names builder 'nope', which no builder defines"
    )
