"""How late the master's event loop runs a periodic tick: the measure of a master too busy to answer.

A tick asks to wake every :data:`~flowbot.defaults.LOOP_LAG_INTERVAL` seconds; how much later than
that it wakes is the time the loop spent on other work it could not put down (a long dispatch
pass, a slow commit, a large event). ``/metrics`` shows the lags as a histogram and the longest,
so a stall shows there before it costs anything; one over
:data:`~flowbot.defaults.LOOP_LAG_WARNING` is also logged.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Histogram

from ..defaults import LOOP_LAG_INTERVAL, LOOP_LAG_WARNING

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the lag histogram's buckets: a healthy loop is late by a millisecond.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class LoopLag:
    """The event loop's lag, measured by a tick that runs until cancelled."""

    def __init__(self, interval: float = LOOP_LAG_INTERVAL) -> None:
        self.interval = interval
        #: Every tick's lag, in seconds (not registered anywhere: ``/metrics`` collects it).
        self.histogram = Histogram(
            "flowbot_loop_lag_seconds",
            "How late the master's event loop ran a periodic tick (work it could not put down).",
            buckets=BUCKETS,
            registry=None,
        )
        #: The longest lag seen since the master started, in seconds.
        self.max = 0.0

    def observe(self, lag: float) -> None:
        self.histogram.observe(lag)
        if lag > self.max:
            self.max = lag
        if lag > LOOP_LAG_WARNING:
            log.warning("the master's event loop was held for %.1f s", lag)

    async def run(self) -> None:
        expected = time.monotonic() + self.interval
        while True:
            await asyncio.sleep(max(0.0, expected - time.monotonic()))
            now = time.monotonic()
            self.observe(max(0.0, now - expected))
            expected = now + self.interval
