"""How long a worker waits before it dials its master again.

The pause doubles from :data:`~flowbot_worker.defaults.RECONNECT_MIN` up to
:data:`~flowbot_worker.defaults.RECONNECT_MAX`, low enough that a master back from a restart has
its workers again within seconds; each pause is drawn at random from the upper half of its
ceiling, so thousands of workers that lost their master together do not dial it in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .defaults import RECONNECT_MAX, RECONNECT_MIN


class Backoff:
    """The pauses between a worker's attempts to reach its master.

    Args:
        first, most: the first ceiling and the largest one, in seconds.
        draw: a number in [0, 1) for each pause (the jitter).
    """

    def __init__(
        self, first: float = RECONNECT_MIN, most: float = RECONNECT_MAX, draw: Callable[[], float] = random.random
    ) -> None:
        self.first, self.most = first, most
        self._draw = draw
        self._ceiling = first

    def reset(self) -> None:
        """The master took the worker in: the next pause starts from the first again."""
        self._ceiling = self.first

    def pause(self) -> float:
        """Seconds to wait before the next attempt: between half the ceiling and the ceiling, which
        then doubles, up to the largest."""
        ceiling = self._ceiling
        self._ceiling = min(ceiling * 2, self.most)
        return ceiling * (0.5 + 0.5 * self._draw())
