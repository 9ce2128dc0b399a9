"""flowbot's worker: dials out to a master over ZeroMQ and runs the commands it is sent.

This package needs only pyzmq (and dulwich for git checkouts without a git binary); it never
imports ``flowbot``. The wire protocol is defined here, in :mod:`flowbot_worker.protocol`.
"""

__version__ = "0.1.0"

from .worker import Worker

__all__ = ["Worker", "__version__"]
