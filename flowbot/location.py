"""Where a pipeline object was defined, so configuration errors can name the file and line."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: How :mod:`flowbot.config` names the code of a notebook's cell: ``NOTEBOOK cell N``.
_CELL = re.compile(r" cell \d+$")


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
    """The innermost frame outside the flowbot package: the line that built the object."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR):
            return Location(filename, frame.f_lineno)
        frame = frame.f_back
    return None
