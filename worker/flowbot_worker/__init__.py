"""flowbot's worker: dials out to a master over ZeroMQ and runs the commands it is sent.

This package needs only pyzmq (and dulwich for git checkouts without a git binary); it never
imports ``flowbot``. The wire protocol is defined here, in :mod:`flowbot_worker.protocol`.
"""

__version__ = "0.1.0"

__all__ = ["Worker", "__version__"]


def __getattr__(name: str) -> object:
    # The master imports the protocol and defaults from this package; only a worker process
    # needs the Worker itself (and asyncio-ZeroMQ with it).
    if name == "Worker":
        from .worker import Worker

        return Worker
    raise AttributeError(f"module 'flowbot_worker' has no attribute {name!r}")
