"""Where a pipeline object was defined, so configuration errors can name the file and line."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


@dataclass(frozen=True, slots=True)
class Location:
    """A file and line in the user's code."""

    filename: str
    lineno: int

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"


def caller() -> Location | None:
    """The innermost frame outside the flowbot package: the line that built the object."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR):
            return Location(filename, frame.f_lineno)
        frame = frame.f_back
    return None
