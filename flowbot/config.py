"""Loading a master directory's pipeline, with errors that name the file, line and problem.

A master directory holds ``pipeline.py``, or ``pipeline.ipynb``: a notebook whose code cells
(only those tagged ``flowbot`` when any are) run in order to define ``pipeline``. IPython magics
and ``display()`` calls in those cells do no harm, and ``master`` is None there, so a cell written
as ``Pipeline(..., master=master)`` for the notebook also works headless.
"""

from __future__ import annotations

import re
import traceback
import types
from pathlib import Path
from typing import Any

from .defaults import PIPELINE_FILE, PIPELINE_NOTEBOOK
from .errors import ConfigError
from .pipeline import Pipeline

#: The tag that marks the cells of a notebook that define its pipeline.
CELL_TAG = "flowbot"

_MAGIC = re.compile(r"^(\s*)[%!]", re.MULTILINE)


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
    return _pipeline_of(module.__dict__, filename)


def load_notebook(path: Path) -> Pipeline:
    """Run a notebook's pipeline cells (see the module docstring) and return its ``pipeline``."""
    import nbformat

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
    module.__dict__.update({"display": _no_display, "master": None})
    for number, cell in tagged or cells:
        source = cell.source
        if source.lstrip().startswith("%%"):
            continue  # a cell magic: the whole cell is for the shell or another language
        _run(_MAGIC.sub(r"\1pass  # ", source), f"{filename} cell {number}", module.__dict__)
    return _pipeline_of(module.__dict__, filename)


def _module(filename: str) -> types.ModuleType:
    module = types.ModuleType("pipeline_config")
    module.__file__ = filename
    return module


def _run(source: str, filename: str, namespace: dict[str, Any]) -> None:
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


def _pipeline_of(namespace: dict[str, Any], filename: str) -> Pipeline:
    pipeline = namespace.get("pipeline")
    if pipeline is None:
        raise ConfigError("defines no module-level `pipeline`", filename)
    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"`pipeline` must be a flowbot.Pipeline, not {type(pipeline).__name__}", filename)
    return pipeline


def _no_display(*objects: Any, **options: Any) -> None:
    """``display()`` outside a kernel: nothing to show."""


def _line_in(exc: BaseException, filename: str) -> int | None:
    """The innermost line of ``filename`` in the exception's traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line
