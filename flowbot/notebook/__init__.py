"""flowbot in Jupyter: live panels over a master running in the kernel, and notebooks as pipelines.

The master itself needs nothing from here: ``await master.start()`` works in a kernel's running
loop as in any asyncio program. This package adds the widgets (``master.panel()``).
"""

from .panel import MasterPanel

__all__ = ["MasterPanel"]
