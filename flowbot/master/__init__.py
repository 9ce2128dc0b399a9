"""The master process: worker registry (ZeroMQ), build queue, running builds and the HTTP API."""

from .master import Master

__all__ = ["Master"]
