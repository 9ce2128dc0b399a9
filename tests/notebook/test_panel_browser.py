"""The panel as people see it: its widget state rendered by Jupyter's HTML widget manager in
headless Chromium. The manager's script comes from the npm registry (``npm pack``), cached."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ipywidgets.embed import dependency_state, embed_minimal_html

import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker

HTML_MANAGER = "@jupyter-widgets/html-manager@1"
CACHE = Path(os.environ.get("FLOWBOT_TEST_CACHE", Path.home() / ".cache" / "flowbot-tests"))


@pytest.fixture(scope="module")
def widget_manager() -> Path:
    """The HTML widget manager's standalone ``embed.js`` (skips locally, fails under CI, without npm)."""
    script = CACHE / "html-manager" / "package" / "dist" / "embed.js"
    if not script.exists():
        problem = None
        if shutil.which("npm") is None:
            problem = "npm is not installed (it fetches Jupyter's widget manager)"
        else:
            target = CACHE / "html-manager"
            target.mkdir(parents=True, exist_ok=True)
            packed = subprocess.run(
                ["npm", "pack", HTML_MANAGER, "--pack-destination", str(target)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if packed.returncode != 0:
                problem = f"npm pack {HTML_MANAGER} failed: {packed.stderr[-500:]}"
            else:
                with tarfile.open(target / packed.stdout.strip().splitlines()[-1]) as archive:
                    archive.extractall(target, filter="data")
        if problem:
            if os.environ.get("CI"):
                pytest.fail(problem)
            pytest.skip(problem)
    return script


async def panel_page(path: Path) -> None:
    """Run two builds (one fails) on an embedded master and save its panel as an HTML page."""
    pipeline = Pipeline(
        workers=[Worker("w1", secret="b")],
        schedulers=[ForceScheduler("force", builders=["unit", "lint"])],
        builders=[
            Builder("unit", workers=["w1"], steps=[Shell("echo fine", name="test")]),
            Builder("lint", workers=["w1"], steps=[Shell("echo 'lint: too long' >&2; exit 1", name="lint")]),
        ],
    )
    master = flowbot.Master(pipeline, db=f"sqlite:///{path.parent / 'panel.sqlite'}")
    await master.start()
    try:
        await master.start_local_workers()
        await master.force("unit")
        await master.force("lint")
        await master.wait_idle(timeout=30)
        panel = master.panel()
        await panel.refresh()  # shows the newest build, lint's, with its log
        embed_minimal_html(
            path,
            views=[panel],
            state=dependency_state(panel),
            title="flowbot panel",
            requirejs=False,
            embed_url="embed.js",
        )
        panel.close()
    finally:
        await master.stop()


def test_the_panel_renders_builders_results_and_a_log_in_a_browser(tmp_path, browser, widget_manager):
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(widget_manager, site / "embed.js")
    # Playwright's synchronous API keeps a loop of its own on this thread: the master gets another.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, panel_page(site / "panel.html")).result(timeout=120)
    # Served over HTTP from one origin, as a browser would load an exported notebook page.
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()

    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{server.server_port}/panel.html")
        page.wait_for_selector("text=#1 SUCCESS", timeout=20_000)
        text = page.inner_text("body")
        assert "unit" in text and "lint" in text
        assert "#1 FAILURE" in text
        assert "lint: too long" in text  # the selected build's log tail
        assert page.locator("button", has_text="Force build").count() == 1
        page.screenshot(path=str(tmp_path / "panel.png"), full_page=True)
    finally:
        page.close()
        server.shutdown()
        server.server_close()
