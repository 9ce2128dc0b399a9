"""``notebooks/failure_trends.ipynb`` runs top to bottom in a real kernel and shows what it promises."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "failure_trends.ipynb"


def outputs(cell: nbformat.NotebookNode) -> str:
    """Everything a code cell printed or displayed, as text."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_the_notebook_runs_and_shows_frames_plots_flaky_tests_and_a_culprit(tmp_path: Path):
    # Given the notebook as committed (no outputs)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")

    # When a real kernel runs it top to bottom
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    # Then no cell failed, and each part shows what a reader expects
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    shown = {cell.source.splitlines()[0]: outputs(cell) for cell in code if cell.source}
    builds = shown["history = master.history"]
    assert "FAILURE" in builds and "SUCCESS" in builds
    assert "datetime64[ns, UTC]" in shown["builds.dtypes"] and "category" in shown["builds.dtypes"]
    assert "failure_rate" in shown["%matplotlib inline"]
    # Eight weeks of history, drawn by the day: the failure rate, the durations and the queue times
    assert "448 builds from 2026-01-05 to 2026-03-01" in "\n".join(shown.values())
    assert sum("image/png" in o.get("data", {}) for cell in code for o in cell.outputs) == 3
    flaky = shown['flaky = history.flaky_tests(window="1h")']
    assert "test_network" in flaky and "test_parse" not in flaky
    assert "bob" in shown['blame = history.culprits("app")']
    assert (
        "parse('1+2') returned 4"
        in shown['history.search_logs("assertionerror")[["builder", "build_number", "step", "line_number", "line"]]']
    )
