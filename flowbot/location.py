"""Where a pipeline object was defined, so configuration errors can name the file and line."""

from __future__ import annotations

import linecache
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: How :mod:`flowbot.config` names the code of a notebook's cell: ``NOTEBOOK cell N``.
_CELL = re.compile(r" cell \d+$")
#: How marimo names the code of a cell it runs.
_MARIMO_CELL = re.compile(r"__marimo__cell_\w+_\.py$")


@dataclass(frozen=True, slots=True)
class Location:
    """A file and line in the user's code."""

    filename: str
    lineno: int

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"

    @property
    def directory(self) -> Path | None:
        """The directory of the file this is in (of the notebook, for a cell of one), if that file is on disk."""
        path = Path(_CELL.sub("", self.filename))
        return path.parent if path.is_file() else None


def caller() -> Location | None:
    """The innermost frame outside the flowbot package: the line that built the object (in a
    notebook's cell, named by the cell rather than the temporary file its code was compiled as)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR):
            return Location(cell_name(filename) or filename, frame.f_lineno)
        frame = frame.f_back
    return None


def cell_name(filename: str) -> str | None:
    """How people know the notebook cell whose code was compiled as ``filename``: ``cell In[5]``
    in Jupyter, ``cell "its first line"`` in marimo; None for a file of their own."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    format_code_name = getattr(getattr(shell, "compile", None), "format_code_name", None)
    named = format_code_name(filename) if format_code_name is not None else None
    if named:
        return f"cell {named[1]}"
    if _MARIMO_CELL.search(filename) and (first := linecache.getline(filename, 1).strip()):
        return f'cell "{first if len(first) <= 40 else first[:39] + "…"}"'
    return None
