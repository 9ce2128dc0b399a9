"""Running a step or a build again when it fails in a way worth trying again.

``Retry(attempts=3, on=[...], delay=...)`` on a step runs the step again, on the same build, after
a failure that matches; on a builder it runs the whole build again (a new build of the same
request). Every attempt is kept: a step's earlier attempts keep their logs (``stdio (attempt 1)``),
a build's earlier attempts are builds of their own that end as RETRY.

What a failure must show to be tried again, any of:

- an exit code (``on=[1, 137]``): the exit code of the command that failed;
- a pattern (``on=[r"Connection reset"]``): a regular expression found in the output;
- ``"lost worker"`` (:data:`LOST_WORKER`): the worker went away. A build whose worker is lost
  always runs again; a builder's ``Retry(on=["lost worker"])`` caps that at ``attempts`` builds.
  On a step it runs the step again on a worker of the builder, once one is free.

``Retry(when="flaky")`` on a test step (one with ``junit=``) runs it again only when every test
that failed is one :meth:`History.flaky_tests <flowbot.analysis.History.flaky_tests>` calls flaky
in the builder's stored test results, and says so in the step's summary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .fields import EXIT_CODE, REGEX, checked, either, list_of, number, one_of, optional, refuse, whole

#: The ``on=`` entry that means: the worker went away.
LOST_WORKER = "lost worker"
#: The ``when=`` that means: every failing test is a known flaky one.
FLAKY = "flaky"

_CONDITION = either(
    EXIT_CODE,
    one_of(LOST_WORKER),
    REGEX,
)


@dataclass(frozen=True, slots=True)
class Failure:
    """What an attempt that failed showed: its commands' exit codes, the patterns its output
    matched, whether its worker was lost."""

    exit_codes: frozenset[int] = frozenset()
    patterns: frozenset[str] = frozenset()
    lost_worker: bool = False


class Retry:
    """Try a failed step or build again.

    Args:
        attempts: how many attempts in all, the first one included (at least 1).
        on: what a failure must show to be tried again: exit codes, regular expressions found in
            the output, :data:`LOST_WORKER`.
        when: ``"flaky"``: a test step is tried again only when every test that failed is flaky.
        delay: seconds to wait between attempts.

    Raises:
        ConfigError: attempts below 1, an exit code out of range, a pattern that does not compile,
            neither ``on`` nor ``when``.
    """

    @checked(
        attempts=whole(minimum=1),
        on=list_of(_CONDITION, "a list of exit codes, log patterns or 'lost worker'"),
        when=optional(one_of(FLAKY)),
        delay=number(minimum=0, unit="seconds"),
    )
    def __init__(self, attempts: int = 3, *, on: Iterable[int | str] = (), when: str | None = None, delay: float = 0):
        self.attempts = attempts
        self.on = list(on)
        self.when = when
        self.delay = delay
        if not self.on and when is None:
            raise refuse(self, None, "needs on=[exit codes, log patterns or 'lost worker'] or when='flaky'")
        self.exit_codes = frozenset(c for c in self.on if isinstance(c, int))
        self.lost_worker = LOST_WORKER in self.on
        self.patterns = [re.compile(p) for p in self.on if isinstance(p, str) and p != LOST_WORKER]

    def matches(self, failure: Failure) -> str | None:
        """Why ``failure`` is worth another attempt (``exit code 1``), or None if it is not."""
        if self.lost_worker and failure.lost_worker:
            return "the worker was lost"
        for code in sorted(self.exit_codes & failure.exit_codes):
            return f"exit code {code}"
        for pattern in self.patterns:
            if pattern.pattern in failure.patterns:
                return f"the output matched {pattern.pattern!r}"
        return None

    def __repr__(self) -> str:
        args: list[Any] = [f"attempts={self.attempts}"]
        if self.on:
            args.append(f"on={self.on!r}")
        if self.when:
            args.append(f"when={self.when!r}")
        return f"Retry({', '.join(args)})"


class PatternWatch:
    """Looks for a retry's patterns in a command's output as it streams (line by line)."""

    def __init__(self, retry: Retry):
        self._patterns = retry.patterns
        self._partial = ""
        self.found: set[str] = set()

    def feed(self, data: bytes) -> None:
        if not self._patterns or len(self.found) == len(self._patterns):
            return
        text = self._partial + data.decode("utf-8", "replace")
        lines = text.split("\n")
        self._partial = lines.pop()[-4096:]  # an unfinished line, kept (a bounded tail) for the next piece
        for line in lines:
            self._search(line)

    def end(self) -> None:
        if self._partial:
            self._search(self._partial)
            self._partial = ""

    def _search(self, line: str) -> None:
        for pattern in self._patterns:
            if pattern.pattern not in self.found and pattern.search(line):
                self.found.add(pattern.pattern)
