"""The matrix model (``flowbot/matrix.py``): cells from axes, exclude and include, misuse refused at its line."""

from __future__ import annotations

import sys

import pytest

from flowbot import Builder, ForceScheduler, Matrix, Pipeline, Shell, Worker
from flowbot.errors import ConfigError
from flowbot.matrix import fits, label
from flowbot.records import Build, BuildsetSpec
from flowbot.reporters.summary import headline
from flowbot.results import Result


def here() -> int:
    return sys._getframe(1).f_lineno


def test_cells_are_the_product_of_the_axes_less_excludes_plus_includes_in_order() -> None:
    matrix = Matrix(
        axes={"python": ["3.11", "3.12"], "os": ["linux", "mac"]},
        exclude=[{"python": "3.11", "os": "mac"}],
        include=[{"python": "3.14", "os": "linux"}, {"python": "3.12", "os": "linux"}],
    )
    assert matrix.cells == [
        {"python": "3.11", "os": "linux"},
        {"python": "3.12", "os": "linux"},
        {"python": "3.12", "os": "mac"},
        {"python": "3.14", "os": "linux"},  # an include of a cell already there adds nothing
    ]
    assert matrix.values == {"python": ["3.11", "3.12", "3.14"], "os": ["linux", "mac"]}
    assert len(matrix) == 4 and not matrix.fail_fast


def test_an_exclude_of_part_of_a_cell_leaves_out_every_cell_that_has_it() -> None:
    matrix = Matrix(axes={"python": ["3.11", "3.12"], "os": ["linux", "mac", "windows"]}, exclude=[{"os": "windows"}])
    assert [label(cell) for cell in matrix] == [
        "python=3.11, os=linux",
        "python=3.11, os=mac",
        "python=3.12, os=linux",
        "python=3.12, os=mac",
    ]


def test_a_large_matrix_is_not_capped() -> None:
    assert len(Matrix(axes={"a": list(range(50)), "b": list(range(40))})) == 2000


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"axes": {}}, "Matrix: needs at least one axis"),
        ({"axes": {"python": []}}, "Matrix: axis 'python' has no values"),
        ({"axes": {"python": ["3.12", "3.12"]}}, "Matrix: axis 'python' lists a value twice: ['3.12', '3.12']"),
        ({"axes": {"python": [True]}}, "Matrix: axes['python'][0] must be a string or a number, not True (bool)"),
        (
            {"axes": {"python": ["3.12"]}, "exclude": [{"os": "mac"}]},
            "Matrix: exclude {'os': 'mac'} names axis 'os'; the axes are ['python']",
        ),
        (
            {"axes": {"python": ["3.12"]}, "exclude": [{"python": "2.7"}]},
            "Matrix: exclude {'python': '2.7'}: '2.7' is not a value of axis 'python' ['3.12']",
        ),
        ({"axes": {"python": ["3.12"]}, "exclude": [{}]}, "Matrix: an empty exclude {} would leave out every cell"),
        ({"axes": {"python": ["3.12"]}, "exclude": [{"python": "3.12"}]}, "Matrix: leaves no cell to build"),
        (
            {"axes": {"python": ["3.12"]}, "include": [{"python": "3.13", "os": "mac"}]},
            "Matrix: include {'python': '3.13', 'os': 'mac'} names no axis 'os'; an include is a whole cell, "
            "one value per axis",
        ),
        (
            {"axes": {"python": ["3.12"], "os": ["mac"]}, "include": [{"python": "3.13"}]},
            "Matrix: include {'python': '3.13'} gives no value for 'os'; an include is a whole cell, "
            "one value per axis",
        ),
        (
            {"axes": {"python": ["3.12"]}, "include": [{"python": None}]},
            "Matrix: include {'python': None}: the value of 'python' must be a string or a number",
        ),
        (
            {"axes": {"python": ["3.12"]}, "fail_fast": "yes"},
            "Matrix: fail_fast must be True or False, not 'yes' (str)",
        ),
    ],
)
def test_misuse_is_refused_at_the_line_that_wrote_it(arguments: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        line = here() + 1
        Matrix(**arguments)
    assert caught.value.problem == problem
    assert (caught.value.filename, caught.value.lineno) == (__file__, line)


def test_a_worker_takes_a_cell_when_it_agrees_on_every_axis_it_declares() -> None:
    cell = {"python": "3.12", "os": "mac"}
    assert fits(cell, {})
    assert fits(cell, {"os": "mac", "arch": "arm64"})
    assert not fits(cell, {"os": "linux"})
    assert not fits(cell, {"os": "mac", "python": "3.11"})


def test_a_cell_no_worker_of_the_builder_takes_is_refused_at_its_matrix() -> None:
    with pytest.raises(ConfigError) as caught:
        line = here() + 8
        Pipeline(
            workers=[Worker("penguin", secret="s", properties={"os": "linux"}), Worker("any", secret="s")],
            builders=[
                Builder(
                    "t",
                    workers=["penguin"],
                    steps=[Shell("true")],
                    matrix=Matrix(axes={"os": ["linux", "mac"]}),
                )
            ],
            schedulers=[ForceScheduler("force", builders=["t"])],
        )
    assert caught.value.problem == (
        "builder 't': no worker of ['penguin'] takes matrix cell os=mac (a worker's properties must agree with the "
        "cell's values)"
    )
    assert caught.value.lineno == line


def test_a_pipeline_gives_buildsets_the_cells_of_its_matrix_builders() -> None:
    pipeline = Pipeline(
        workers=[Worker("w", secret="s")],
        builders=[
            Builder("t", workers=["w"], steps=[Shell("true")], matrix=Matrix(axes={"n": [1, 2]})),
            Builder("plain", workers=["w"], steps=[Shell("true")]),
        ],
        schedulers=[ForceScheduler("force", builders=["t", "plain"])],
    )
    spec = BuildsetSpec(scheduler="force", builders=("t", "plain"), sourcestamps=())
    assert pipeline.with_cells(spec).cells == {"t": ({"n": 1}, {"n": 2})}
    # A spec that names its cells already (a rebuild of one cell) keeps them
    one = BuildsetSpec(scheduler="force", builders=("t",), sourcestamps=(), cells={"t": ({"n": 2},)})
    assert pipeline.with_cells(one).cells == {"t": ({"n": 2},)}
    assert pipeline.with_cells(None) is None


def test_a_pipeline_prints_its_builders_matrix() -> None:
    pipeline = Pipeline(
        workers=[Worker("w", secret="s")],
        builders=[
            Builder(
                "t", workers=["w"], steps=[Shell("true", name="check")], matrix=Matrix(axes={"py": [1, 2], "os": ["l"]})
            )
        ],
        schedulers=[ForceScheduler("force", builders=["t"])],
    )
    assert "    t on w: check [matrix: 2 cells of py x os]" in str(pipeline)


def test_a_cells_report_says_which_cell_it_is() -> None:
    cell = Build(7, "test", 7, "w", 0.0, 1.0, Result.FAILURE, "main", "1a2b3c4", cell={"python": "3.12", "os": "mac"})
    assert headline(cell) == "FAILURE: test #7 (python=3.12, os=mac) on main (1a2b3c4)"
    assert cell.cell_label == " (python=3.12, os=mac)"
    assert headline(Build(8, "lint", 8, "w", 0.0, 1.0, Result.SUCCESS, "main")) == "SUCCESS: lint #8 on main"
