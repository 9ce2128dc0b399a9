"""Errors of the worker package (the master maps them into its own error tree)."""


class WorkerError(Exception):
    """Root of every error the worker package raises."""


class ProtocolError(WorkerError):
    """A message that does not follow the wire protocol; it is dropped, never acted on."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        #: A short, stable key for counting drops (``bad-signature``, ``replay``, ...).
        self.reason = reason


class CommandError(WorkerError):
    """A command that cannot be started (unknown name, bad arguments, path outside basedir)."""


class KeyFileError(WorkerError):
    """A CURVE key or key file that cannot be used: missing, unreadable or malformed."""
