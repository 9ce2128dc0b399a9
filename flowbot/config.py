"""Loading a master directory's pipeline, with errors that name the file, line and problem.

A master directory holds ``pipeline.py``, or ``pipeline.ipynb``: a notebook whose code cells
(only those tagged ``flowbot`` when any are) run in order to define ``pipeline``. The cells are read
as IPython reads them, but no kernel runs them: line magics and shell escapes are skipped (and
logged), cell magics that only time or capture their cell (``%%time``, ``%%capture``) run it, other
cell magics are skipped, and a magic or shell escape whose value a cell uses (``files = !ls``) is
an error naming the cell and line. ``display()`` shows nothing and ``master`` is None there, so a
cell written as ``Pipeline(..., master=master)`` for the notebook also works headless.
"""

from __future__ import annotations

import ast
import linecache
import logging
import traceback
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .defaults import PIPELINE_FILE, PIPELINE_NOTEBOOK
from .errors import ConfigError
from .pipeline import Pipeline

if TYPE_CHECKING:
    from IPython.core.inputtransformer2 import TransformerManager

log = logging.getLogger(__name__)

#: The tag that marks the cells of a notebook that define its pipeline.
CELL_TAG = "flowbot"

#: Cell magics that only time or capture their cell: without a kernel, the cell just runs.
BODY_MAGICS = frozenset({"time", "capture"})


def pipeline_file(basedir: str | Path) -> Path:
    """The pipeline file of a master directory: ``pipeline.py``, else ``pipeline.ipynb``."""
    script = Path(basedir) / PIPELINE_FILE
    notebook = Path(basedir) / PIPELINE_NOTEBOOK
    return notebook if notebook.exists() and not script.exists() else script


def load_pipeline(basedir: str | Path) -> Pipeline:
    """Run the directory's pipeline file and return its ``pipeline``.

    Raises:
        ConfigError: the file is missing, does not compile, raises, or defines no valid pipeline;
            the message names the file and, where it can, the line (and the cell of a notebook).
    """
    path = pipeline_file(basedir)
    if path.suffix == ".ipynb":
        return load_notebook(path)
    filename = str(path)
    try:
        source = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"no {PIPELINE_FILE} or {PIPELINE_NOTEBOOK} here (create one with: flowbot create-master DIR)", filename
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror}", filename) from None
    return load_source(source, filename)


def load_source(source: str, filename: str) -> Pipeline:
    """Run pipeline source code as a fresh module named ``pipeline_config``."""
    module = _module(filename)
    _run(source, filename, module.__dict__)
    return _pipeline_of(module.__dict__, filename, _assigned(source))


def load_notebook(path: Path) -> Pipeline:
    """Run a notebook's pipeline cells (see the module docstring) and return its ``pipeline``."""
    import nbformat
    from IPython.core.inputtransformer2 import TransformerManager

    filename = str(path)
    try:
        notebook = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise ConfigError("no such notebook", filename) from None
    except Exception as exc:  # nbformat raises several kinds for a file that is not a notebook
        raise ConfigError(f"not a readable notebook: {exc}", filename) from None
    cells = [(n, cell) for n, cell in enumerate(notebook.cells, 1) if cell.cell_type == "code"]
    tagged = [(n, cell) for n, cell in cells if CELL_TAG in cell.get("metadata", {}).get("tags", [])]
    module = _module(filename)
    shell = _Headless(module.__dict__, TransformerManager())
    module.__dict__.update({"display": _no_display, "master": None, "get_ipython": lambda: shell})
    for number, cell in tagged or cells:
        shell.run_cell(cell.source, f"{filename} cell {number}")
    cell, line = shell.pipeline_line or (filename, None)
    return _pipeline_of(module.__dict__, cell, line)


class _Headless:
    """What ``get_ipython()`` gives a notebook's cells run without a kernel (see the module docstring)."""

    def __init__(self, namespace: dict[str, Any], transformer: TransformerManager):
        self.namespace = namespace
        self.transformer = transformer
        self.cell = ""  # the cell running now
        self.body = 1  # the line of that cell where a cell magic's body starts
        self.pipeline_line: tuple[str, int] | None = None  # the cell and line that last set ``pipeline``

    def run_cell(self, source: str, cell: str, first: int = 1) -> None:
        """Run ``source`` as IPython would, as lines ``first``... of ``cell`` (errors name those)."""
        lines = source.splitlines(keepends=True)
        # IPython drops leading blank lines; they are put back so that line numbers stay the cell's.
        blank = next((n for n, line in enumerate(lines) if line.strip()), len(lines))
        padding = "\n" * (first - 1 + blank)
        python = padding + self.transformer.transform_cell("".join(lines[blank:]))
        _refuse_used_values(python, (padding + "".join(lines[blank:])).splitlines(), cell)
        self.cell, self.body = cell, first + blank + 1
        _run(python, cell, self.namespace)
        line = _assigned(python)
        if line is not None:
            self.pipeline_line = (cell, line)

    def run_cell_magic(self, name: str, line: str, body: str) -> None:
        if name in BODY_MAGICS:
            self.run_cell(body, self.cell, self.body)
        else:
            log.info("%s: skipped, a headless master runs no %%%%%s cells", self.cell, name)

    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1) -> None:
        log.info("%s: skipped %%%s %s (a headless master runs no magics)", self.cell, name, line)

    def system(self, command: str) -> None:
        log.info("%s: skipped !%s (a headless master runs no shell escapes)", self.cell, command)


def _refuse_used_values(python: str, lines: list[str], cell: str) -> None:
    """Raise ConfigError for a magic or shell escape whose value the cell uses: headless it has none."""
    try:
        tree = ast.parse(python)
    except SyntaxError:
        return  # compiling the cell says where
    statements = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and ast.unparse(node.func.value) == "get_ipython()"
            and id(node) not in statements
        ):
            problem = f"`{lines[node.lineno - 1].strip()}` needs IPython for its value, and a headless master has none"
            raise ConfigError(f"{problem}: compute it in Python instead", cell, node.lineno)


def _module(filename: str) -> types.ModuleType:
    module = types.ModuleType("pipeline_config")
    module.__file__ = filename
    return module


def _run(source: str, filename: str, namespace: dict[str, Any]) -> None:
    # The source as it runs, for tracebacks and for errors that name an argument's line.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as exc:
        hint = ""
        if "await" in exc.msg and "outside" in exc.msg:
            hint = f" (tag the cells that define the pipeline with {CELL_TAG!r} to leave the others out)"
        raise ConfigError(f"syntax error: {exc.msg}{hint}", filename, exc.lineno) from None
    try:
        exec(code, namespace)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{type(exc).__name__}: {exc}", filename, _line_in(exc, filename)) from exc


def _pipeline_of(namespace: dict[str, Any], filename: str, line: int | None) -> Pipeline:
    pipeline = namespace.get("pipeline")
    if pipeline is None:
        raise ConfigError("defines no module-level `pipeline`", filename, line)
    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"`pipeline` must be a flowbot.Pipeline, not {type(pipeline).__name__}", filename, line)
    return pipeline


def _assigned(source: str, name: str = "pipeline") -> int | None:
    """The last line of ``source`` that assigns ``name`` at module level, if one does."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    line = None
    for node in _module_statements(tree.body):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and any(
            isinstance(target, ast.Name) and target.id == name for target in targets
        ):
            line = max(line or 0, node.lineno)
    return line


def _module_statements(body: list[Any]) -> Iterator[ast.AST]:
    """The statements that run at module level: those of ``if``, ``for``, ``try``... blocks too,
    not those of functions and classes."""
    for node in body:
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for block in ("body", "orelse", "finalbody", "handlers", "cases"):
                yield from _module_statements(getattr(node, block, []))


def _no_display(*objects: Any, **options: Any) -> None:
    """``display()`` outside a kernel: nothing to show."""


def _line_in(exc: BaseException, filename: str) -> int | None:
    """The innermost line of ``filename`` in the exception's traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line
