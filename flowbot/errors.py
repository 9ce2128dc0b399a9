"""One error tree for flowbot: catch :class:`FlowbotError` to catch them all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowbot_worker.errors import ProtocolError as _WireProtocolError

if TYPE_CHECKING:
    from .location import Location


class FlowbotError(Exception):
    """Root of every error flowbot raises on purpose."""


class ConfigError(FlowbotError):
    """A pipeline that cannot run; names the file and line where it can.

    Args:
        problem: what is wrong, in one sentence.
        filename: the pipeline file.
        lineno: the line the problem comes from, when known.
    """

    def __init__(self, problem: str, filename: str | None = None, lineno: int | None = None):
        self.problem = problem
        self.filename = filename
        self.lineno = lineno
        where = f"{filename}:{lineno}: " if filename and lineno else f"{filename}: " if filename else ""
        super().__init__(where + problem)

    @classmethod
    def at(cls, problem: str, where: Location | None) -> ConfigError:
        """The error, placed at ``where`` (an object's ``defined_at``, say) when it is known."""
        return cls(problem, where and where.filename, where and where.lineno)


class ArgumentError(ConfigError, ValueError):
    """A pipeline object given an argument it cannot take; a ValueError too, as Python's own are."""


class ConfigErrors(ConfigError):
    """Several problems found at once, reported together so each run fixes them all."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        first = errors[0]
        super().__init__(first.problem, first.filename, first.lineno)
        self.args = ("\n".join(str(e) for e in errors),)


#: A message that breaks the wire protocol (defined by the worker package, shared here).
ProtocolError = _WireProtocolError


class StoreError(FlowbotError):
    """The database refused or failed an operation."""


class StoreUnavailable(StoreError):
    """The database cannot take work now (down, restarting, unreachable, its disk full); try again later."""


class NotFound(FlowbotError):
    """A builder, build, step, log or request that does not exist."""


class Gone(FlowbotError):
    """What was asked for existed once and is no longer there (an artifact replaced or removed)."""


class InvalidRequest(FlowbotError):
    """A request whose content is wrong (bad JSON, a missing field, a value of the wrong type)."""


class TransferError(FlowbotError):
    """A file transfer that may not happen (a path outside the artifacts directory) or cannot go on
    (out of order chunks, too big, a damaged file, stalled)."""


class BodyTooLarge(FlowbotError):
    """A request body over the endpoint's limit (HTTP 413)."""


class WorkerLost(FlowbotError):
    """The worker running a command went away; the build ends as RETRY."""


class BuildStopped(FlowbotError):
    """Someone stopped the build; it ends as CANCELLED."""


class Unauthorized(FlowbotError):
    """A request that needs credentials came without any (HTTP 401)."""


class Forbidden(FlowbotError):
    """Wrong credentials, a webhook delivery with a bad signature or token, or a state-changing
    request from another site (HTTP 403)."""


class TooManyAttempts(FlowbotError):
    """A client got a password wrong too often; it may try again after ``retry_after`` seconds (HTTP 429)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class ReportError(FlowbotError):
    """A reporter could not deliver a report this time; it is retried with back-off."""


class ReportRejected(ReportError):
    """The endpoint refused a report for good (bad credentials, a malformed request); not retried."""


class LaunchError(FlowbotError):
    """A launcher could not start, check or stop an instance of a worker started on demand."""


class EventsLost(FlowbotError):
    """A reader of the master's event stream fell so far behind that events were dropped."""
