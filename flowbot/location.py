"""Where a pipeline object was defined, so configuration errors can name the file and line.

A :class:`Location` knows the call that made the object too, so that an error about one argument
can name the line of that argument (``curve_key=...`` four lines below ``Pipeline(``). Where the call
is comes from the interpreter's own record of where each instruction is (``co_positions``, as
:mod:`traceback` uses it), and the argument's line from the source; both are looked up only when an
error asks.
"""

from __future__ import annotations

import ast
import functools
import itertools
import linecache
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import CodeType
from typing import Any

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: How :mod:`flowbot.config` names the code of a notebook's cell: ``NOTEBOOK cell N``.
_CELL = re.compile(r" cell \d+$")
#: How marimo names the code of a cell it runs.
_MARIMO_CELL = re.compile(r"__marimo__cell_\w+_\.py$")

#: ``(line, end line, column, end column)`` of a call expression.
Span = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Location:
    """A file and line in the user's code."""

    filename: str
    lineno: int
    #: The code that made the object, and its instruction there (the call), when known.
    code: CodeType | None = field(default=None, compare=False, repr=False)
    instruction: int = field(default=-1, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"

    @property
    def directory(self) -> Path | None:
        """The directory of the file this is in (of the notebook, for a cell of one), if that file is on disk."""
        path = Path(_CELL.sub("", self.filename))
        return path.parent if path.is_file() else None

    def argument(self, name: str, position: int | None = None) -> Location:
        """Where the call wrote argument ``name`` (given by keyword, or as positional argument
        ``position``); this location when the call cannot be found or does not write it."""
        if self.code is None:
            return self
        span = _span(self.code, self.instruction)
        call = _call_at(self.code.co_filename, span) if span is not None else None
        if call is None:
            return self
        node: ast.AST | None = next((k.value for k in call.keywords if k.arg == name), None)
        positional = list(itertools.takewhile(lambda a: not isinstance(a, ast.Starred), call.args))
        if node is None and position is not None and position < len(positional):
            node = positional[position]
        return replace(self, lineno=node.lineno) if node is not None else self


def caller(made: Any = None) -> Location | None:
    """The innermost frame outside the flowbot package: the line that built the object (in a
    notebook's cell, named by the cell rather than the temporary file its code was compiled as).

    With ``made``, the constructors of that object written outside flowbot (a custom step's
    ``__init__`` calling ``super().__init__``) are skipped too, so the location is where it was made.
    """
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR) and not (
            made is not None and frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is made
        ):
            return Location(cell_name(filename) or filename, frame.f_lineno, frame.f_code, frame.f_lasti)
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


def _span(code: CodeType, instruction: int) -> Span | None:
    """Where the instruction at byte offset ``instruction`` of ``code`` is, if the interpreter knows."""
    if instruction < 0:
        return None
    span = next(itertools.islice(code.co_positions(), instruction // 2, None), None)
    return span if span is not None and None not in span else None


def _call_at(filename: str, span: Span) -> ast.Call | None:
    """The call expression of ``filename`` that ends where ``span`` ends (the innermost one)."""
    tree = _tree(filename, "".join(linecache.getlines(filename)))
    if tree is None:
        return None
    line, end_line, col, end_col = span
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (node.end_lineno, node.end_col_offset) == (end_line, end_col)
        and (node.lineno, node.col_offset) <= (line, col)
    ]
    return max(calls, key=lambda node: (node.lineno, node.col_offset), default=None)


@functools.lru_cache(maxsize=16)
def _tree(filename: str, source: str) -> ast.Module | None:
    try:
        return ast.parse(source, filename)
    except (SyntaxError, ValueError):
        return None
