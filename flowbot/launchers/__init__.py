"""Launchers: where workers started on demand run (see :class:`Launcher` to write one of your own).

The Docker and Kubernetes launchers import their clients only when they first start something, so a
pipeline that declares a ``DockerWorker`` loads without the ``flowbot[docker]`` extra installed
(checkconfig says it is missing).
"""

from .base import Dial, Instance, Launcher

__all__ = ["Dial", "Instance", "Launcher"]
