"""The worker's pauses between attempts to reach its master (``flowbot_worker/backoff.py``)."""

from __future__ import annotations

import random

from flowbot_worker.backoff import Backoff
from flowbot_worker.defaults import RECONNECT_MAX, RECONNECT_MIN


def test_pauses_double_up_to_the_cap_each_in_the_upper_half_of_its_step() -> None:
    # Given a worker's backoff whose jitter draws the lowest, then the highest, values there are
    low, high = Backoff(draw=lambda: 0.0), Backoff(draw=lambda: 1.0 - 1e-9)

    # When the master stays away for many attempts
    lows = [low.pause() for _ in range(10)]
    highs = [high.pause() for _ in range(10)]

    # Then the pauses double from the first step and stop at the cap, never above it, never below its half
    assert lows[:3] == [RECONNECT_MIN / 2, RECONNECT_MIN, 2 * RECONNECT_MIN]
    assert lows[-1] == RECONNECT_MAX / 2
    assert max(highs) <= RECONNECT_MAX and highs[-1] > 0.99 * RECONNECT_MAX
    assert RECONNECT_MAX <= 5.0  # a restarted master has its workers back within seconds


def test_workers_that_lost_their_master_together_do_not_dial_it_in_lockstep() -> None:
    # Given 2,000 workers at the same attempt, each with its own draws
    draws = random.Random(12)
    workers = [Backoff(draw=draws.random) for _ in range(2000)]
    for worker in workers:
        for _ in range(5):
            worker.pause()

    # When they all wait before their next attempt
    pauses = sorted(worker.pause() for worker in workers)

    # Then the pauses spread over the upper half of the cap, none twice the same
    assert RECONNECT_MAX / 2 <= pauses[0] and pauses[-1] <= RECONNECT_MAX
    assert pauses[-1] - pauses[0] > 0.9 * RECONNECT_MAX / 2
    assert len(set(pauses)) == 2000


def test_a_welcome_starts_the_pauses_from_the_first_step_again() -> None:
    backoff = Backoff(draw=lambda: 0.0)
    for _ in range(6):
        backoff.pause()
    backoff.reset()
    assert backoff.pause() == RECONNECT_MIN / 2
