"""The panel live in real frontends: a notebook opened in JupyterLab, and a marimo notebook, each in
Debian's Chromium driven by Playwright, their cells run, and the panel seen changing as builds run,
are stopped and finish. ``FLOWBOT_SCREENSHOTS=DIR`` keeps the screenshots (the README's come from here)."""

from __future__ import annotations

import os
import secrets
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from tests.support import Process, free_port, wait_for

#: Waits in the browser: a kernel starting on a busy machine takes its time.
WAIT = 90_000

#: A builder whose build prints coloured lines, then waits for ``go`` beside the notebook, then fails.
SETUP = """
import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker

LINES = "for i in $(seq 1 300); do printf '\\\\033[32mok\\\\033[0m line %s\\\\n' $i; done"
WAIT = "while [ ! -e {go} ]; do sleep 0.1; done; printf '\\\\033[31mboom\\\\033[0m\\\\n'; exit 1"
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["slow", "quick"])],
    builders=[
        Builder("slow", workers=["w1"], steps=[Shell(LINES, name="print"), Shell(WAIT, name="wait")]),
        Builder("quick", workers=["w1"], steps=[Shell("echo quick", name="echo")]),
    ],
)
master = flowbot.Master(pipeline, db="sqlite:///{db}")
await master.start()
await master.start_local_workers()
"""


def shot(page, name: str, tmp_path: Path) -> None:
    keep = os.environ.get("FLOWBOT_SCREENSHOTS")
    page.screenshot(path=str(Path(keep) / name if keep else tmp_path / name), full_page=False)


def check_the_panel_follows_a_build(page, panel, go: Path, screenshot: str, tmp_path: Path) -> None:
    """Force ``slow`` from the panel, watch it run and fail (and take ``screenshot``); force it again and stop it."""
    row = panel.locator(".row[data-builder=slow]")
    row.get_by_text("no builds yet").wait_for(timeout=WAIT)
    assert panel.locator(".stop").is_disabled()  # nothing runs: nothing to stop

    # When the user forces slow from the panel's form
    panel.locator(".force-builder").select_option("slow")
    panel.locator(".force").click()

    # Then its build shows as running, its steps numbered from 1, its log coloured and followed to its end
    row.locator(".cell.r-running").wait_for(timeout=WAIT)
    panel.locator("pre.log", has_text="ok line 300").wait_for(timeout=WAIT)
    steps = panel.locator(".step")
    assert steps.nth(0).inner_text().split("\n")[:2] == ["1", "print"]
    assert steps.nth(1).inner_text().split("\n")[:2] == ["2", "wait"]
    assert panel.locator(".stop").is_enabled()
    green = panel.locator("pre.log span", has_text="ok").first
    assert green.evaluate("e => getComputedStyle(e).color") != panel.locator("pre.log").evaluate(
        "e => getComputedStyle(e).color"
    )
    assert "\x1b" not in panel.locator("pre.log").inner_text() and "[32m" not in panel.locator("pre.log").inner_text()
    at_end = "e => e.scrollHeight - e.scrollTop - e.clientHeight < 8 && e.scrollHeight > e.clientHeight"
    wait_for(lambda: panel.locator("pre.log").evaluate(at_end), what="the log shown at its end")

    # And when it finishes, the panel says so and Stop is disabled again
    go.touch()
    row.locator(".cell.r-FAILURE").wait_for(timeout=WAIT)
    panel.locator("pre.log", has_text="boom").wait_for(timeout=WAIT)
    wait_for(lambda: panel.locator(".stop").is_disabled(), what="Stop disabled on a finished build")
    panel.evaluate("e => e.scrollIntoView({block: 'start'})")
    shot(page, screenshot, tmp_path)

    # And a second build, stopped from the panel while it runs, ends CANCELLED
    go.unlink()
    panel.locator(".force").click()
    row.locator(".cell.r-running").wait_for(timeout=WAIT)
    wait_for(lambda: panel.locator(".stop").is_enabled(), what="Stop enabled on a running build")
    panel.locator(".stop").click()
    row.locator(".cell.r-CANCELLED").wait_for(timeout=WAIT)


# -- JupyterLab ---------------------------------------------------------------------------------------


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """A JupyterLab server on a free port over ``tmp_path/lab``: its URL, its root and its token."""
    root = tmp_path / "lab"
    root.mkdir()
    port, token = free_port(), secrets.token_hex(16)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')  # no news toast
    env = {
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
    }
    lab = Process(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",  # CI runs as root
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        tmp_path / "jupyterlab.log",
        env=env,
    )
    try:
        wait_for(lambda: "is running at" in lab.log() or not lab.alive(), timeout=60, what="JupyterLab to start")
        assert lab.alive(), lab.log()
        yield f"http://127.0.0.1:{port}", root, token
    finally:
        lab.stop()


def notebook(path: Path, *cells: str) -> None:
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.cells = [nbformat.v4.new_code_cell(textwrap.dedent(cell).strip()) for cell in cells]
    nbformat.write(book, path)


def run_cell(page, code: str) -> None:
    """Add a cell at the end of the notebook, type ``code`` into it and run it, as a user would."""
    page.locator(".jp-Notebook").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+End")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")


@pytest.mark.timeout(600)
def test_the_panel_runs_live_in_jupyterlab(jupyterlab, browser, tmp_path):
    # Given a notebook that starts a master and shows its panel, opened in JupyterLab
    url, root, token = jupyterlab
    go = root / "go"
    notebook(root / "panel.ipynb", SETUP.format(go=go, db=root / "panel.sqlite"), "master.panel()", "pipeline")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(f"{url}/lab/tree/panel.ipynb?token={token}")
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=WAIT)

        # When its cells are run
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

        # Then the panel shows in the output, and follows what the master does
        panel = page.locator(".flowbot-panel")
        panel.wait_for(timeout=WAIT)
        check_the_panel_follows_a_build(page, panel, go, "panel-jupyterlab.png", tmp_path)

        # And the pipeline drew itself as a graph
        page.locator(".jp-OutputArea-output svg").first.wait_for(timeout=WAIT)

        # And a build and a History frame display richly, from cells the user adds
        run_cell(page, "master.history.build((await master.store.builds.query(builder='slow'))[-1].id)")
        page.locator(".flowbot-build", has_text="slow #1").wait_for(timeout=WAIT)
        assert "boom" in page.locator(".flowbot-build").inner_text()
        run_cell(page, "master.history.builds()[['builder', 'number', 'result']]")
        page.locator(".jp-RenderedHTMLCommon table.dataframe", has_text="CANCELLED").wait_for(timeout=WAIT)
    finally:
        page.close()


# -- marimo -------------------------------------------------------------------------------------------


MARIMO_APP = """
import marimo

app = marimo.App()


@app.cell
async def _():
{setup}
    return master, pipeline


@app.cell
def _(master):
    master.panel()
    return


@app.cell
def _(pipeline):
    pipeline
    return


@app.cell
def _():
    import marimo as mo

    show = mo.ui.run_button(label="Show the history")
    show
    return mo, show


@app.cell
async def _(master, mo, show):
    mo.stop(not show.value)
    builds = master.history.builds()[["builder", "number", "result"]]
    report = master.history.build((await master.store.builds.query(builder="slow"))[-1].id)
    return builds, report


@app.cell
def _(builds):
    builds
    return


@app.cell
def _(report):
    report
    return


if __name__ == "__main__":
    app.run()
"""


@pytest.mark.timeout(600)
def test_the_panel_runs_live_in_marimo(browser, tmp_path):
    # Given a marimo notebook that starts a master and shows its panel, run as an app
    go = tmp_path / "go"
    setup = textwrap.indent(SETUP.format(go=go, db=tmp_path / "panel.sqlite"), "    ")
    (tmp_path / "panel.py").write_text(MARIMO_APP.format(setup=setup))
    port = free_port()
    app = Process(
        [sys.executable, "-m", "marimo", "run", "panel.py", "--headless", "--no-token", "--port", str(port)],
        tmp_path / "marimo.log",
        cwd=tmp_path,
    )
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        wait_for(lambda: f":{port}" in app.log() or not app.alive(), timeout=60, what="marimo to start")
        assert app.alive(), app.log()
        page.goto(f"http://127.0.0.1:{port}")

        # Then the panel shows, and follows what the master does
        panel = page.locator(".flowbot-panel")
        panel.wait_for(timeout=WAIT)
        check_the_panel_follows_a_build(page, panel, go, "panel-marimo.png", tmp_path)

        # And the pipeline, a History frame and a build display richly (the last two once asked for)
        page.locator("svg", has_text="slow").first.wait_for(timeout=WAIT)
        page.get_by_role("button", name="Show the history").click()
        page.get_by_text("CANCELLED").last.wait_for(timeout=WAIT)
        page.locator(".flowbot-build", has_text="slow #1").wait_for(timeout=WAIT)
    finally:
        page.close()
        app.stop()
    assert "Traceback" not in app.log(), app.log()
