"""Declared arguments (``flowbot/fields.py``, ``flowbot/location.py``): a value of the wrong kind is
refused at the line of the argument that wrote it, naming the object, the field and what it must be."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from flowbot import Builder, Shell, Step, Trigger, Worker
from flowbot.config import load_pipeline, load_source
from flowbot.errors import ConfigError, ConfigErrors
from flowbot.fields import TEXT, checked, list_of, mapping, optional, whole

FILENAME = "/masters/demo/pipeline.py"


def here() -> int:
    return sys._getframe(1).f_lineno


def load_error(source: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_source(textwrap.dedent(source), FILENAME)
    return caught.value


def test_an_argument_on_a_line_of_its_own_is_placed_there_by_keyword_or_by_position() -> None:
    error = load_error("""\
        from flowbot import Builder, Shell

        unit = Builder(
            5,
            workers=["w1"],
            steps=[Shell("make")],
            description=None,
        )
    """)

    assert isinstance(error, ConfigErrors)
    assert [(e.lineno, e.problem) for e in error.errors] == [
        (4, "Builder: name must be a non-empty string without '/', not 5 (int)"),
        (7, "Builder: description must be a string, not None (NoneType)"),
    ]


def test_a_misspelt_argument_is_placed_at_its_own_line_with_the_name_it_may_mean() -> None:
    error = load_error("""\
        from flowbot import Shell

        test = Shell(
            "make test",
            halt_on_faliure=True,
        )
    """)

    assert (error.lineno, error.problem) == (
        5,
        "Shell has no argument 'halt_on_faliure' (did you mean halt_on_failure?)",
    )


def test_a_wrong_item_of_a_list_or_a_dict_is_named_by_its_place() -> None:
    line = here() + 2
    with pytest.raises(ConfigError) as caught:
        Trigger(schedulers=["deploy", 5])
    assert (caught.value.filename, caught.value.lineno) == (__file__, line)
    assert caught.value.problem == "Trigger: schedulers[1] must be a string, not 5 (int)"

    with pytest.raises(ConfigError, match=r": Nested: properties\['os'\]\['x'\] must be a string, not 1 \(int\)$"):
        Nested({"os": {"x": 1}})


class Nested:
    """A class declaring a nested kind: a dict of dicts of strings."""

    @checked(properties=mapping(TEXT, mapping(TEXT, TEXT)))
    def __init__(self, properties: dict) -> None:
        self.properties = properties


def test_a_custom_step_is_placed_where_it_was_made_not_at_its_call_to_super() -> None:
    class Deploy(Step):
        def __init__(self, target: str, **flags: object) -> None:
            super().__init__(**flags)
            self.target = target

    line = here() + 2
    with pytest.raises(ConfigError) as caught:
        Deploy("production", always_run="yes")

    assert (caught.value.filename, caught.value.lineno) == (__file__, line)
    assert caught.value.problem == "Deploy: always_run must be True or False, not 'yes' (str)"


def test_a_wrong_argument_is_a_value_error_too_as_python_s_own_are() -> None:
    with pytest.raises(ValueError, match="must be a whole number of at least 1 or None"):
        Worker("w1", secret="s", max_builds=0)


def test_lists_come_back_as_lists_and_a_single_name_stands_for_a_list() -> None:
    builder = Builder("unit", workers="w1", steps=(step for step in [Shell("make")]))

    assert builder.workers == ["w1"]
    assert [step.command for step in builder.steps] == ["make"]


def test_kinds_say_what_they_take() -> None:
    assert optional(whole(minimum=1, maximum=8)).expected == "a whole number of at least 1 and at most 8 or None"
    assert list_of(TEXT).expected == "a list of strings"
    assert mapping(TEXT, whole()).expected == "a dict of strings to whole numbers"


def test_an_argument_in_a_notebook_cell_is_placed_at_its_line_of_the_cell(tmp_path: Path) -> None:
    sources = [
        "from flowbot import *",
        'pipeline = Pipeline(\n    workers=[Worker("w1", secret="s")],\n    properties=["os"],\n)',
    ]
    cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "pipeline.ipynb")

    with pytest.raises(ConfigError) as caught:
        load_pipeline(tmp_path)

    assert str(caught.value) == (
        f"{tmp_path / 'pipeline.ipynb'} cell 2:3: Pipeline: properties must be a dict of property names to values "
        "or None, not ['os'] (list)"
    )


def test_a_type_error_inside_a_constructor_is_its_own_not_a_call_that_did_not_fit() -> None:
    class Broken:
        @checked(name=TEXT)
        def __init__(self, name: str) -> None:
            len(5)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="has no len"):
        Broken("x")
    with pytest.raises(ConfigError, match=r": Broken needs name$"):
        Broken()  # type: ignore[call-arg]
