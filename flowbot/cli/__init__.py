"""The ``flowbot`` command line: a thin layer over the library, one function per command."""

from .main import main

__all__ = ["main"]
