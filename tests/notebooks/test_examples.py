"""The example notebooks run top to bottom in a real kernel and show what they promise."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from flowbot.config import load_pipeline

from .test_failure_trends import outputs

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"


def run(name: str, where: Path) -> list[nbformat.NotebookNode]:
    """Run a copy of the example notebooks' folder in ``where`` (what they make stays there)."""
    for notebook in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(notebook, where)
    notebook = nbformat.read(where / name, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(where)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    return code


def test_quickstart_runs_a_pipeline_shows_the_panel_and_follows_a_changed_builder(tmp_path, monkeypatch):
    monkeypatch.delenv("QUICKSTART_REPO", raising=False)
    code = run("quickstart.ipynb", tmp_path)
    shown = [outputs(cell) for cell in code]
    everything = "\n".join(shown)
    assert f"repository: {tmp_path / 'quickstart-repo'}" in everything
    assert "<svg" in "".join(str(o.get("data", {}).get("text/html", "")) for c in code for o in c.outputs)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for c in code for o in c.outputs)
    assert "('test', 1, 'SUCCESS')" in everything
    # The changed builder's next build ran the step the new cell added, before the tests
    assert "['git', 'compile', 'unittest']" in shown[-3]
    table = shown[-2]
    assert "FAILURE" not in table and table.count("SUCCESS") == 2


def test_deploy_runs_the_quickstart_notebook_as_a_headless_master(tmp_path, monkeypatch):
    monkeypatch.delenv("QUICKSTART_REPO", raising=False)
    code = run("deploy.ipynb", tmp_path)
    shown = "\n".join(outputs(cell) for cell in code)
    assert "pipeline.ipynb: OK: 2 workers, 1 scheduler, 1 builder" in shown
    assert "('w1', True)" in shown and "('w2', True)" in shown
    assert "SUCCESS" in shown and "stopped the master" in shown
    assert not (tmp_path / "deploy-site").exists()


def test_the_quickstart_loaded_headless_builds_one_repository_beside_it(tmp_path, monkeypatch):
    # Given the quickstart as a master directory's pipeline
    monkeypatch.delenv("QUICKSTART_REPO", raising=False)
    shutil.copy(NOTEBOOKS / "quickstart.ipynb", tmp_path / "pipeline.ipynb")

    # When it is loaded twice (checkconfig, then start or reconfig)
    first, again = (load_pipeline(tmp_path).builder("test").steps[0].repourl for _ in range(2))

    # Then both check out the one repository made beside it
    assert first == again == str(tmp_path / "quickstart-repo")
    assert (tmp_path / "quickstart-repo" / "calc.py").exists()


def test_triage_reruns_the_failing_step_in_place_and_replays_a_second_worker(tmp_path):
    code = run("triage.ipynb", tmp_path)
    shown = {cell.source.splitlines()[0]: outputs(cell) for cell in code if cell.source}
    assert "failed step: 2" in shown['print("failed step:", report.failed_step)']
    # The rerun's output came into its cell as it ran; it failed again, then passed with the fix
    again = shown["again = await master.rerun_step(int(failed.build_id), report.failed_step)"]
    ran_on = re.search(r"checking on (w\d)\nfixed=no\n", again)
    assert ran_on and f"('FAILURE', '{ran_on[1]}', (1, 'Rerun'))" in again
    fixed = next(text for source, text in shown.items() if source.startswith("fixed = await master.rerun_step("))
    assert "fixed=yes" in fixed and "('SUCCESS', (1, 'Rerun'))" in fixed
    # A second worker for a saturated builder at least halves its total wait
    waits = re.search(r"recorded ([\d.]+) s, with two workers ([\d.]+) s", "\n".join(shown.values()))
    assert waits and float(waits[2]) <= float(waits[1]) / 2
