"""Showing flowbot's reports in the notebook that runs the master: Jupyter (IPython) or marimo.

No widgets: the master itself shows what a reconfiguration does in the cell that asked for it, so
this sits beside the model, not in the notebook face (:mod:`flowbot.notebook`, the panel).
"""

from __future__ import annotations

import sys
from typing import Any, Protocol


class Shown(Protocol):
    """What was shown, to show again in its place as it changes."""

    def update(self, obj: Any) -> None: ...


def show(obj: Any) -> Shown | None:
    """Show ``obj`` in the output of the cell running now, if a notebook runs this code.

    Returns:
        A handle that shows another object in its place (None outside a notebook).
    """
    marimo = sys.modules.get("marimo")
    if marimo is not None and marimo.running_in_notebook():
        marimo.output.append(obj)
        return None  # marimo shows a cell's output once it has run; a later change is not shown
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return None  # plain Python, or an IPython terminal: the master's log says it
    from IPython.display import display

    return display(obj, display_id=True)
