"""flowbot in Jupyter and marimo: live panels over a master running in the kernel, and notebooks as pipelines.

The master itself needs nothing from here: ``await master.start()`` works in a kernel's running
loop as in any asyncio program. This package adds the panel (``master.panel()``); the panel's
widget library loads only when a panel is made. Reports shown in the cell that runs come from
:mod:`flowbot.display`, which the master uses itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .panel import MasterPanel

__all__ = ["MasterPanel"]


def __getattr__(name: str) -> object:
    if name == "MasterPanel":
        from .panel import MasterPanel

        return MasterPanel
    raise AttributeError(f"module 'flowbot.notebook' has no attribute {name!r}")
