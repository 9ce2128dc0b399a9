"""The worker is its own small distribution: a worker host installs pyzmq and dulwich, nothing else."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("flowbot", "tornado", "pandas", "sqlalchemy", "alembic", "ipywidgets", "nbformat")


def test_the_worker_runs_with_the_master_side_libraries_unimportable():
    # Given an interpreter where importing flowbot or any master-side library fails
    script = f"""
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError(f"{{name}} must not be imported by the worker")
sys.meta_path.insert(0, Refuse())
import flowbot_worker, flowbot_worker.cli, flowbot_worker.worker, flowbot_worker.commands
sys.argv = ["flowbot-worker", "--help"]
flowbot_worker.cli.main()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    # Then the worker still loads completely
    assert result.returncode == 0, result.stderr
    assert "flowbot-worker" in result.stdout


def test_the_worker_distribution_declares_only_what_a_worker_needs():
    worker = tomllib.loads((ROOT / "worker" / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dep in worker["dependencies"]}
    assert names == {"pyzmq", "dulwich"}
    assert worker["scripts"]["flowbot-worker"] == "flowbot_worker.cli:main"
    master = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(master["scripts"]) == {"flowbot", "flowbot-worker"}


@pytest.mark.timeout(600)
def test_pip_install_worker_alone_pulls_in_no_master_libraries(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = venv / "bin" / "pip"
    source = shutil.copytree(ROOT / "worker", tmp_path / "worker", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    install = subprocess.run([str(pip), "install", "-q", str(source)], capture_output=True, text=True, timeout=540)
    assert install.returncode == 0, install.stderr
    listed = subprocess.run([str(pip), "list", "--format=freeze"], capture_output=True, text=True, check=True)
    installed = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert {"flowbot-worker", "pyzmq", "dulwich"} <= installed
    assert not installed & {"tornado", "pandas", "sqlalchemy", "ipywidgets", "alembic", "flowbot"}
    helped = subprocess.run([str(venv / "bin" / "flowbot-worker"), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--secret-file" in helped.stdout


def test_the_command_line_that_runs_a_worker_is_written_once():
    # flowbot_worker.launch writes it; whatever starts a worker (local workers, launchers, the demo,
    # benchmarks, tests, the screenshot script) asks it. The CLI's own tests spell out the options they
    # test, and a test may compare a command line with the one it expects.
    written = []
    for top in ("flowbot", "worker", "benchmarks", "docs", "tests"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path.relative_to(ROOT).as_posix() in ("worker/flowbot_worker/launch.py", "tests/e2e/test_cli.py"):
                continue
            tree = ast.parse(path.read_text(), str(path))
            expected = {id(n) for c in ast.walk(tree) if isinstance(c, ast.Compare) for n in ast.walk(c)}
            for node in ast.walk(tree):
                if isinstance(node, ast.List | ast.Tuple) and id(node) not in expected:
                    values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
                    if any(values[i : i + 2] == ["-m", "flowbot_worker"] for i in range(len(values))):
                        written.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert written == []
