"""The base class of reporters, and the report of a build that they receive.

Reporters are the graph's last nodes: they consume builds as they start and finish and tell people
or other systems (GitHub, an HTTP endpoint, mail). A reporter subclasses :class:`Reporter` and
overrides the hooks it needs, each a coroutine; every hook is a no-op here. The master runs hooks
off the build path, one reporter at a time in order, each with its own queue: a slow or failing
endpoint delays only its own reports, never a build. A hook that raises is retried with back-off
(:class:`~flowbot.errors.ReportRejected` is not retried) and then logged and dropped.

Credentials (tokens, passwords, headers) may be given as they are or as a reference to one of the
pipeline's secrets, ``Interpolate("%(secret:github_token)s")``, resolved with :meth:`Reporter.render`
each time a report goes out, so a pipeline file need not hold them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..defaults import REPORT_ATTEMPTS, REPORT_BACKOFF
from ..errors import ConfigError
from ..fields import TEXT, checked, either, list_of, number, optional, where, whole
from ..properties import Properties, Renderable, render
from ..records import Build
from ..results import Result
from .controls import Controls

#: What a reporter may report, by the result of a finished build:
MODES = {
    #: every build
    "all",
    #: builds that failed
    "failing",
    #: builds that passed
    "passing",
    #: builds with warnings
    "warnings",
    #: builds that hit an exception
    "exception",
    #: builds whose result differs from the previous build of the same builder
    "problem",
}


class Reporter:
    """Base class for reporters; every hook is a no-op.

    Args:
        name: shown in logs and metrics; defaults to the class name.
        builders: names of the builders to report on (None: all of them).
        mode: which finished builds to report: one of :data:`MODES` or several (any matching one).
            Starts are reported only in mode ``"all"``, where every end is too: a commit status
            set to pending always gets its result.
        attempts: tries per report before it is dropped (logged).
        backoff: seconds before the first retry; each retry waits twice as long as the one before.

    Raises:
        ConfigError: an unknown mode.
    """

    #: Whether the finished build's steps and log tail should be read for this reporter.
    wants_details = False
    #: Whether the finished build's failing tests should be read for this reporter.
    wants_tests = False
    #: Whether the files the finished build stored on the master should be listed for this reporter
    #: (they are for every reporter that :attr:`wants_details`).
    wants_artifacts = False

    @checked(
        name=optional(TEXT),
        builders=optional(list_of(TEXT, "a list of builder names", single=True)),
        mode=either(TEXT, list_of(TEXT)),
        attempts=whole(minimum=1),
        backoff=number(minimum=0, unit="seconds"),
    )
    def __init__(
        self,
        name: str | None = None,
        *,
        builders: Iterable[str] | None = None,
        mode: str | Iterable[str] = "all",
        attempts: int = REPORT_ATTEMPTS,
        backoff: float = REPORT_BACKOFF,
    ):
        self.name = name or type(self).__name__
        self.builders = None if builders is None else list(builders)
        self.mode = frozenset([mode] if isinstance(mode, str) else mode)
        unknown = self.mode - MODES
        if unknown or not self.mode:
            raise ConfigError.at(
                f"reporter mode must be among {sorted(MODES)}, not {sorted(unknown) or 'nothing'}", where(self, "mode")
            )
        self.attempts = attempts
        self.backoff = backoff
        self._secret: Callable[[str], str] | None = None

    # -- credentials ------------------------------------------------------------------------------

    def credential(self, what: str, value: Any) -> Any:
        """Check a credential argument: a string, None, or a renderable such as
        ``Interpolate("%(secret:name)s")``; returns it.

        Raises:
            ConfigError: anything else.
        """
        if value is None or isinstance(value, str) or (isinstance(value, Renderable) and not isinstance(value, type)):
            return value
        raise ConfigError(f"{what} must be a string or a secret such as Interpolate('%(secret:name)s')", *self._where())

    def use_secrets(self, secret: Callable[[str], str]) -> None:
        """Set how ``%(secret:name)s`` is looked up (the master does, before the first report).

        ``secret`` returns a secret's value, or raises KeyError for an unknown name.
        """
        self._secret = secret

    def render(self, value: Any) -> Any:
        """``value`` with the secrets it refers to filled in (strings, lists and dicts are looked into).

        Raises:
            RenderError: a secret no provider of the pipeline has.
        """
        return render(value, SecretsOnly(self._secret))

    def _where(self) -> tuple[str | None, int | None]:
        return (self.defined_at.filename, self.defined_at.lineno) if self.defined_at else (None, None)

    # -- choosing ---------------------------------------------------------------------------------

    def reports_on(self, builder: str) -> bool:
        """Whether builds of ``builder`` concern this reporter at all."""
        return self.builders is None or builder in self.builders

    @property
    def reports_starts(self) -> bool:
        """Whether build starts go to :meth:`build_started`: only when every end will be reported."""
        return "all" in self.mode

    def wants(self, build: Build) -> bool:
        """Whether the finished ``build`` should be reported, by the mode."""
        if "all" in self.mode:
            return True
        result = build.result
        chosen = {
            "failing": result == Result.FAILURE,
            "passing": result == Result.SUCCESS,
            "warnings": result == Result.WARNINGS,
            "exception": result == Result.EXCEPTION,
            "problem": result != Result.RETRY and result != (build.previous_result or Result.SUCCESS),
        }
        return any(chosen[mode] for mode in self.mode)

    # -- hooks --------------------------------------------------------------------------------------

    async def build_started(self, build: Build) -> None:
        """A build started (on a worker) and :attr:`reports_starts` is true."""

    async def build_finished(self, build: Build) -> None:
        """A build finished and :meth:`wants` it."""

    async def serve(self, controls: Controls) -> None:
        """Run for as long as the master uses the reporter (cancelled when it stops using it): a
        bot keeps its connection here and answers people through ``controls``."""

    async def close(self) -> None:
        """The master is stopping: release connections, threads, files."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class SecretsOnly:
    """What a reporter's credentials render against: the pipeline's secrets, and nothing of a build."""

    def __init__(self, secret: Callable[[str], str] | None):
        self.properties = Properties()
        self._secret = secret

    def sourcestamp(self, codebase: str) -> Mapping[str, Any] | None:
        return None

    def worker_info(self) -> Mapping[str, Any]:
        return {}

    def secret(self, name: str) -> str:
        if self._secret is None:
            raise KeyError(name)
        return self._secret(name)
