"""Loading a master directory's pipeline, with errors that name the file, line and problem."""

from __future__ import annotations

import traceback
import types
from pathlib import Path

from .defaults import PIPELINE_FILE
from .errors import ConfigError
from .pipeline import Pipeline


def pipeline_file(basedir: str | Path) -> Path:
    """The pipeline file of a master directory."""
    return Path(basedir) / PIPELINE_FILE


def load_pipeline(basedir: str | Path) -> Pipeline:
    """Run ``basedir/pipeline.py`` and return its module-level ``pipeline``.

    Raises:
        ConfigError: the file is missing, does not compile, raises, or defines no valid pipeline;
            the message names the file and, where it can, the line.
    """
    path = pipeline_file(basedir)
    filename = str(path)
    try:
        source = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"no {PIPELINE_FILE} here (create one with: flowbot create-master DIR)", filename) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror}", filename) from None
    return load_source(source, filename)


def load_source(source: str, filename: str) -> Pipeline:
    """Run pipeline source code as a fresh module named ``pipeline_config``."""
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as exc:
        raise ConfigError(f"syntax error: {exc.msg}", filename, exc.lineno) from None
    module = types.ModuleType("pipeline_config")
    module.__file__ = filename
    try:
        exec(code, module.__dict__)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{type(exc).__name__}: {exc}", filename, _line_in(exc, filename)) from exc
    pipeline = module.__dict__.get("pipeline")
    if pipeline is None:
        raise ConfigError("defines no module-level `pipeline`", filename)
    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"`pipeline` must be a flowbot.Pipeline, not {type(pipeline).__name__}", filename)
    return pipeline


def _line_in(exc: BaseException, filename: str) -> int | None:
    """The innermost line of ``filename`` in the exception's traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line
