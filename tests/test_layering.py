"""Which way imports run: the faces use the master, the master the model and the store, nothing back up.

The public ``Master`` (:mod:`flowbot.server`) is the one place that wires the core master and its HTTP face.

Every ``import`` in ``flowbot/`` and ``worker/flowbot_worker/`` is read from the source, at any depth
(in functions and under ``TYPE_CHECKING`` too), so a new arrow against the layering fails here
before a reader finds it.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The faces over the master: they may use anything.
FACES = ("flowbot.web", "flowbot.cli", "flowbot.notebook")
#: The pipeline's nodes: what a pipeline is made of.
NODES = (
    "flowbot.pipeline",
    "flowbot.builder",
    "flowbot.sources",
    "flowbot.schedulers",
    "flowbot.steps",
    "flowbot.reporters",
)
#: The master's parts that are pure decisions (no sockets, no store): replays in the analysis run them too.
PURE_MASTER = ("flowbot.master.policy", "flowbot.master.queue", "flowbot.master.locks")

#: The one way up from the master to a face: ``master.panel()``, which makes the notebook's panel
#: on demand (a headless master never loads it).
PANEL = ("flowbot.master.master", "flowbot.notebook")
#: The composition root: the public ``Master``, the core master with its HTTP face. It may use anything;
#: only the packages that name ``Master`` for users load it, when asked for.
SERVER = "flowbot.server"
#: The core master's module.
CORE = "flowbot.master.master"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def imports(package: str) -> tuple[tuple[str, str, tuple[str, ...], bool], ...]:
    """(importer, imported module, names, at load time) for each import in ``package``'s modules."""
    return tuple(_imports(package))


def _imports(package: str) -> Iterator[tuple[str, str, tuple[str, ...], bool]]:
    base = ROOT / "worker" if package == "flowbot_worker" else ROOT
    for path in sorted((base / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = module_name(path, base)
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        at_load = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield name, alias.name, (), id(node) in at_load
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = here.split(".")
                    target = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                yield name, target, tuple(alias.name for alias in node.names), id(node) in at_load


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def arrows(source: tuple[str, ...], target: tuple[str, ...]) -> set[tuple[str, str]]:
    return {
        (importer, imported)
        for importer, imported, _, _ in imports("flowbot")
        if within(importer, source) and within(imported, target)
    }


def test_the_master_never_imports_a_face_but_to_make_the_notebook_panel():
    found = arrows(("flowbot.master",), (*FACES, SERVER)) - {("flowbot.master", SERVER)}
    assert found <= {PANEL}
    # and only on demand: loading the master loads no face
    loaded = {m for i, m, _, at_load in imports("flowbot") if at_load and within(i, ("flowbot.master",))}
    assert {m for m in loaded if within(m, (*FACES, SERVER))} == set()


def test_no_module_but_master_py_the_server_and_the_faces_imports_master():
    allowed = ("flowbot.master.master", SERVER, *FACES)
    reexports = {"flowbot", "flowbot.master"}  # the public API names Master, loaded when asked for
    found = {
        importer
        for importer, imported, names, _ in imports("flowbot")
        if "Master" in names
        and imported in ("flowbot", "flowbot.master", SERVER, CORE)
        and not within(importer, allowed)
        and importer not in reexports
    }
    assert found == set()
    eager = {i for i, m, _, at_load in imports("flowbot") if i in reexports and m in (SERVER, CORE) and at_load}
    assert eager == set()
    # and the server is loaded through those names only
    assert {i for i, m, _, _ in imports("flowbot") if m == SERVER} <= reexports


def test_the_http_face_knows_the_master_only_by_what_it_is_handed():
    """The handlers get :class:`flowbot.web.services.WebServices`: nothing in the face names the
    master's class, so each handler can be built and served against fakes."""
    found = {(i, m, names) for i, m, names, _ in imports("flowbot") if within(i, ("flowbot.web",))}
    assert {(i, m) for i, m, names in found if m in (SERVER, CORE) or "Master" in names} == set()


def test_the_model_knows_nothing_of_the_master_the_store_the_analysis_or_the_faces():
    model = tuple(
        f"flowbot.{path.stem}"
        for path in (ROOT / "flowbot").iterdir()
        if path.stem not in ("master", "server", "store", "analysis", "web", "cli", "notebook", "__init__", "__main__")
        and (path.suffix == ".py" or (path / "__init__.py").exists())
    )
    assert set(NODES) <= set(model)
    assert arrows(model, ("flowbot.master", "flowbot.store", "flowbot.analysis", *FACES)) == set()


def test_the_store_serves_the_master_and_the_analysis_and_uses_neither():
    assert arrows(("flowbot.store",), ("flowbot.master", "flowbot.analysis", *FACES, *NODES)) == set()


def test_the_analysis_reads_the_store_and_replays_with_the_masters_pure_policy_only():
    found = arrows(("flowbot.analysis",), ("flowbot.master", *FACES))
    assert {imported for _, imported in found} <= set(PURE_MASTER)
    # what the pure parts load, all the way down, is neither the master's machinery nor the store
    loads: dict[str, set[str]] = {}
    for importer, imported, _, at_load in imports("flowbot"):
        if at_load:
            loads.setdefault(importer, set()).add(imported)
    seen, todo = set(), list(PURE_MASTER)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += loads.get(module, ())
    assert not {m for m in seen if within(m, ("flowbot.master.master", "flowbot.store", *FACES))}, seen


def test_the_worker_never_imports_flowbot():
    assert [(i, m) for i, m, _, _ in imports("flowbot_worker") if within(m, ("flowbot",))] == []
