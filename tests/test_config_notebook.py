"""A notebook as a master's configuration: tagged cells, magics, errors that name the cell."""

from __future__ import annotations

import logging
import subprocess
import sys

import nbformat
import pytest
from flowbot_worker.curve import create_key, load_key_pair

from flowbot.config import load_pipeline
from flowbot.errors import ConfigError

from .support import MasterProcess, finished_builds

PIPELINE_CELL = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
pipeline = Pipeline(
    workers=[Worker("w1", secret="nb")],
    schedulers=[ForceScheduler("force", builders=["unit"])],
    builders=[Builder("unit", workers=["w1"], steps=[Shell("echo from the notebook")])],
    master=master,
)
display(pipeline)
"""


def write(path, *cells: tuple[str, list[str]]) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# My CI")]
    for source, tags in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = tags
        notebook.cells.append(cell)
    nbformat.write(notebook, path)


def test_tagged_cells_define_the_pipeline_and_the_rest_is_left_out(tmp_path):
    write(
        tmp_path / "pipeline.ipynb",
        ("import flowbot\nmaster = flowbot.Master(None)\nawait master.start()", []),
        ("%load_ext autoreload\n!echo hello\n" + PIPELINE_CELL, ["flowbot"]),
        ("%%bash\necho this is bash", ["flowbot"]),
        ("master.panel()", []),
    )
    pipeline = load_pipeline(tmp_path)
    assert [b.name for b in pipeline.builders] == ["unit"]


def test_lines_of_a_multi_line_string_that_look_like_magics_are_kept_as_written(tmp_path):
    # Given a step's shell script whose lines start with ! and %, as a cell's string
    script = '"""\nset -e\n! grep -q TODO notes.txt\n%s\n"""'
    cell = f"SCRIPT = {script}\n" + PIPELINE_CELL.replace('Shell("echo from the notebook")', "Shell(SCRIPT)")
    write(tmp_path / "pipeline.ipynb", (cell, []))

    # Then the step runs the script as written
    (step,) = load_pipeline(tmp_path).builder("unit").steps
    assert step.command == "\nset -e\n! grep -q TODO notes.txt\n%s\n"


def test_shell_escapes_are_skipped_and_one_whose_output_is_used_is_an_error_naming_it(tmp_path, caplog):
    # Given a cell with a shell escape, and one that uses a shell escape's output
    write(tmp_path / "pipeline.ipynb", ("!echo hello\n" + PIPELINE_CELL, []))
    with caplog.at_level(logging.INFO, logger="flowbot.config"):
        assert load_pipeline(tmp_path).builder("unit") is not None
    assert "pipeline.ipynb cell 2: skipped !echo hello" in caplog.text
    write(tmp_path / "pipeline.ipynb", (PIPELINE_CELL, []), ("import os\nfiles = !ls tests", []))

    # Then the second is refused, naming its cell and line (not a syntax error)
    with pytest.raises(ConfigError) as raised:
        load_pipeline(tmp_path)
    assert "pipeline.ipynb cell 3:2: `files = !ls tests` needs IPython for its value" in str(raised.value)


def test_a_timed_cell_runs_and_other_cell_magics_are_skipped(tmp_path, caplog):
    # Given the pipeline cell under %%time (after blank lines), and a %%bash cell
    write(tmp_path / "pipeline.ipynb", ("\n%%time\n" + PIPELINE_CELL, []), ("%%bash\nrm -rf /nothing", []))

    # Then the pipeline is what the timed cell defines, and the bash cell is left out, saying so
    with caplog.at_level(logging.INFO, logger="flowbot.config"):
        assert load_pipeline(tmp_path).builder("unit") is not None
    assert "pipeline.ipynb cell 3: skipped, a headless master runs no %%bash cells" in caplog.text

    # And an error in a captured cell names its line in the cell
    write(tmp_path / "pipeline.ipynb", ("%%capture out\nx = 1\nraise ValueError('bad cell')", []))
    with pytest.raises(ConfigError, match=r"pipeline.ipynb cell 2:3: ValueError: bad cell"):
        load_pipeline(tmp_path)


def test_a_curve_key_is_read_from_beside_the_notebook(tmp_path, monkeypatch):
    # Given a notebook whose pipeline names a key file beside it, loaded from elsewhere
    create_key(tmp_path, "master")
    write(tmp_path / "pipeline.ipynb", (PIPELINE_CELL.replace("master=master", 'curve_key="master.key_secret"'), []))
    monkeypatch.chdir(tmp_path.parent)

    # Then that is the key it reads
    assert load_pipeline(tmp_path).curve == load_key_pair(tmp_path / "master.key_secret")


def test_without_tags_every_code_cell_runs(tmp_path):
    write(tmp_path / "pipeline.ipynb", ("import os\nhost = os.uname().nodename", []), (PIPELINE_CELL, []))
    assert load_pipeline(tmp_path).builder("unit") is not None


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ([("x = 1", []), ("pipeline = = 2", [])], "pipeline.ipynb cell 3:1: syntax error"),
        ([("import flowbot\nraise ValueError('bad cell')", [])], "pipeline.ipynb cell 2:2: ValueError: bad cell"),
        ([("m = await something()", [])], "tag the cells that define the pipeline with 'flowbot'"),
        ([("x = 1", [])], "defines no module-level `pipeline`"),
    ],
)
def test_errors_name_the_cell_and_line(tmp_path, cells, expected):
    write(tmp_path / "pipeline.ipynb", *cells)
    with pytest.raises(ConfigError) as raised:
        load_pipeline(tmp_path)
    assert expected in str(raised.value)


def test_a_pipeline_error_points_into_the_cell_that_made_the_object(tmp_path):
    write(tmp_path / "pipeline.ipynb", (PIPELINE_CELL.replace('workers=["w1"], steps', 'workers=["w9"], steps'), []))
    with pytest.raises(ConfigError, match=r"pipeline.ipynb cell 2:5: builder 'unit' names worker 'w9'"):
        load_pipeline(tmp_path)


def test_a_headless_master_runs_a_notebook_pipeline(tmp_path, worker_factory):
    basedir = tmp_path / "m"
    basedir.mkdir()
    write(basedir / "pipeline.ipynb", (PIPELINE_CELL, ["flowbot"]))
    checked = subprocess.run(
        [sys.executable, "-m", "flowbot", "checkconfig", str(basedir)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0 and "pipeline.ipynb: OK: 1 worker" in checked.stdout
    master = MasterProcess(basedir).wait_ready()
    try:
        worker_factory(master, "w1", "nb")
        master.client.force("unit")
        (build,) = finished_builds(master.client, 1)
        assert build["result"] == "SUCCESS"
    finally:
        master.stop()
