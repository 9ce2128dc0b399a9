"""Declaring the workers a pipeline may use."""

from __future__ import annotations

from .location import caller


class Worker:
    """A worker the master accepts: its name and the secret it signs messages with.

    Args:
        name: the name the worker process connects with (``flowbot-worker --name``).
        secret: the shared secret; every message on the link is signed with it.
        max_builds: how many builds the worker runs at once (None: one per builder, no other limit).
        properties: properties every build on this worker gets.
        public_key: the worker's CURVE public key (``flowbot-worker create-key`` prints it), for a
            pipeline with a ``curve_key``: only a worker holding its secret half connects as this one.
    """

    def __init__(
        self,
        name: str,
        secret: str = "",
        *,
        max_builds: int | None = None,
        properties: dict | None = None,
        public_key: str | None = None,
    ):
        self.name = name
        self.secret = secret
        self.public_key = public_key
        self.max_builds = max_builds
        self.properties = dict(properties or {})
        self.defined_at = caller()

    def __repr__(self) -> str:
        return f"Worker({self.name!r})"
