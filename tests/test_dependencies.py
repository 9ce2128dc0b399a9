"""What ``pip install flowbot`` brings is enough to import every module a headless master loads.

A package the tests install anyway (a test tool may bring it along) would otherwise hide one the
project forgot to declare, and the README's demo would fail on a fresh machine.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def declared() -> set[str]:
    """The distributions ``[project] dependencies`` names, normalised."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {normal(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_at_module_level() -> dict[str, str]:
    """Top-level names of the modules that flowbot's modules import when they load, with one place each."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "flowbot").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.parse(path.read_text()).body:  # module level only: optional ones import lazily
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.partition(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_package_a_module_imports_when_it_loads_is_a_declared_dependency():
    distributions = importlib.metadata.packages_distributions()
    ours = {"flowbot", "flowbot_worker", "__future__"}
    missing = {
        top: where
        for top, where in imported_at_module_level().items()
        if top not in ours
        and top not in sys.stdlib_module_names
        and not {normal(d) for d in distributions.get(top, [top])} & declared()
    }
    assert missing == {}, f"imported but not in [project] dependencies: {missing}"
