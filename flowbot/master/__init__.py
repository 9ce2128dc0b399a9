"""The master process: worker registry (ZeroMQ), build queue, running builds; its HTTP face is ``flowbot.web``.

The core master is :class:`flowbot.master.master.Master`; ``Master`` here is the public one, the
core with its HTTP face (:mod:`flowbot.server`). It loads on first use, so the pure parts of the
package (the queue, the lock table and the dispatch policy, which
:meth:`History.replay <flowbot.analysis.History.replay>` runs too) import without ZeroMQ, Tornado
or the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..server import Master

__all__ = ["Master"]


def __getattr__(name: str) -> object:
    if name == "Master":
        from ..server import Master

        return Master
    raise AttributeError(f"module 'flowbot.master' has no attribute {name!r}")
