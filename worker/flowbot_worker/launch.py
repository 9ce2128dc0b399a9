"""The command line that runs a worker, for whatever starts one: local workers, launchers, the demo.

Kept apart from the CLI so that writing the command imports nothing of the worker itself (no ZeroMQ),
which the master's pure parts rely on.
"""

from __future__ import annotations

import os
import sys


def program(python: str) -> list[str]:
    """How ``python`` (a path, or a name on the PATH) runs a worker."""
    return [python, "-m", "flowbot_worker"]


#: How a worker is run with the Python that runs the caller.
PROGRAM = tuple(program(sys.executable))
#: The environment variable a worker reads its secret from.
SECRET_VARIABLE = "FLOWBOT_WORKER_SECRET"


def command(
    master: str, name: str, basedir: str | os.PathLike, *options: str, program: tuple[str, ...] | list[str] = PROGRAM
) -> list[str]:
    """The command line that runs worker ``name`` in ``basedir``, dialling ``master``, with more
    ``options`` (``--exit-with-parent``, key options). It carries no secret, which would show in
    every process list: give the worker its secret in :data:`SECRET_VARIABLE`.

    Args:
        program: what runs the worker (another Python, a container's ``python3 -m flowbot_worker``).
    """
    return [*program, "--master", master, "--name", name, "--basedir", str(basedir), *options]
