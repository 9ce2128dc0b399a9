"""Holding off whoever guesses credentials: users' passwords, and API tokens.

Two limits, each over a sliding window; a guess that either refuses is not even checked, so a
refused guess tells nothing, right or wrong:

- per address and account: after :data:`~flowbot.defaults.PASSWORD_FAILURES` wrong in a minute,
  that address is refused for that account until the oldest failure is a minute old;
- per account, from all addresses: after :data:`~flowbot.defaults.ACCOUNT_FAILURES` wrong in
  :data:`~flowbot.defaults.ACCOUNT_FAILURE_WINDOW`, the account is refused to every address that
  has not used it successfully lately, so an attacker who rotates addresses gets no more
  guesses than that. The addresses the account was used from go on as before: guessing can keep
  a user out of new places while it lasts (and the window after), never out of the ones she uses.

Against the account's limit, an attempt counts as a failure from the moment it begins until it
turns out right, so guesses sent all at once are held to it as well as guesses sent one by one.
Wrong API tokens count as one account (a wrong token names nobody). Everything is in memory,
bounded, and starts afresh with the master.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable

from ..defaults import (
    ACCOUNT_FAILURE_WINDOW,
    ACCOUNT_FAILURES,
    KNOWN_ADDRESS_SECONDS,
    PASSWORD_FAILURE_WINDOW,
    PASSWORD_FAILURES,
)
from ..errors import TooManyAttempts


class Failures:
    """The times of recent failures per key, for a limit of ``limit`` within ``window`` seconds.

    Holds at most ``max_keys`` keys: past that, keys whose failures are all past go first, then
    the least recently failed.
    """

    def __init__(self, limit: int, window: float, max_keys: int):
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._times: dict[Hashable, deque[float]] = {}

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` is under its limit again (0: it is now)."""
        times = self._times.get(key)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window - now)

    def add(self, key: Hashable, now: float) -> None:
        times = self._times.pop(key, None) or deque(maxlen=self.limit)
        times.append(now)
        self._times[key] = times  # the most recent last, for forgetting the oldest first
        if len(self._times) > self.max_keys:
            for old in [k for k, kept in self._times.items() if kept[-1] + self.window < now]:
                del self._times[old]
            while len(self._times) > self.max_keys:
                del self._times[next(iter(self._times))]

    def clear(self, key: Hashable) -> None:
        self._times.pop(key, None)

    def discard(self, key: Hashable, when: float) -> None:
        """Forget the failure of ``key`` at ``when`` (an attempt that turned out right)."""
        times = self._times.get(key)
        if times is not None and when in times:
            times.remove(when)


class CredentialThrottle:
    """Wrong credentials per address and account, and per account from anywhere.

    Args:
        what: how a refusal names the credentials: ``"passwords"``, ``"API tokens"``.
        clock: seconds from any fixed point (``time.monotonic``).
    """

    def __init__(
        self,
        what: str,
        *,
        per_address: tuple[int, float] = (PASSWORD_FAILURES, PASSWORD_FAILURE_WINDOW),
        per_account: tuple[int, float] = (ACCOUNT_FAILURES, ACCOUNT_FAILURE_WINDOW),
        known_for: float = KNOWN_ADDRESS_SECONDS,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.what = what
        self._by_address = Failures(*per_address, max_keys)
        self._by_account = Failures(*per_account, max_keys)
        self._known_for = known_for
        self._known: dict[str, dict[str, float]] = {}  # account -> address -> last success
        self._clock = clock

    def begin(self, address: str, account: str = "") -> float:
        """Let ``address`` try ``account``, counting the attempt against the account as a failure
        until :meth:`succeeded` says otherwise; returns when it began, for :meth:`succeeded`.

        Raises:
            TooManyAttempts: ``address`` may not try ``account`` now.
        """
        now = self._clock()
        whose = f" for {account!r}" if account else ""
        wait = self._by_address.wait((address, account), now)
        if wait:
            raise TooManyAttempts(
                f"too many wrong {self.what}{whose} from this address: try again in {math.ceil(wait)} s",
                math.ceil(wait),
            )
        wait = self._by_account.wait(account, now)
        if wait and not self._is_known(address, account, now):
            raise TooManyAttempts(
                f"too many wrong {self.what}{whose} lately, from many addresses: from this one, try again "
                f"in {math.ceil(wait)} s (where they were used before, they still work)",
                math.ceil(wait),
            )
        self._by_account.add(account, now)
        return now

    def failed(self, address: str, account: str = "") -> None:
        """The attempt was wrong: it counts against ``address`` too."""
        self._by_address.add((address, account), self._clock())

    def succeeded(self, address: str, account: str, began: float) -> None:
        """The attempt that began at ``began`` was right: it is no failure, and ``address`` is one
        the account is used from."""
        self._by_address.clear((address, account))
        self._by_account.discard(account, began)
        known = self._known.setdefault(account, {})
        known.pop(address, None)
        known[address] = self._clock()
        if len(known) > 100:  # an account is used from a few places; keep the latest
            del known[next(iter(known))]
        if len(self._known) > self._by_account.max_keys:
            del self._known[next(iter(self._known))]

    def _is_known(self, address: str, account: str, now: float) -> bool:
        used = self._known.get(account, {}).get(address)
        return used is not None and now - used < self._known_for
