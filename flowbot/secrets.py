"""Secrets: values a build may use but never shows, stores or logs.

A pipeline lists providers, asked in order: ``%(secret:name)s`` in an ``Interpolate`` renders to
the secret, and every log line of the build has each secret it used replaced by ``<secret>``.
Secrets are not properties: they never reach the store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class SecretProvider(Protocol):
    """Something that knows secrets by name."""

    def get(self, name: str) -> str | None: ...


class SecretsInDirectory:
    """One file per secret, named as the secret (as Docker and Kubernetes mount them)."""

    def __init__(self, directory: str | Path, *, strip: bool = True):
        self.directory = Path(directory)
        self.strip = strip

    def get(self, name: str) -> str | None:
        if not name or "/" in name or name.startswith("."):
            return None
        try:
            text = (self.directory / name).read_text()
        except OSError:
            return None
        return text.strip() if self.strip else text

    def __repr__(self) -> str:
        return f"SecretsInDirectory({str(self.directory)!r})"


class SecretsInEnvironment:
    """Secrets from the master's environment; ``prefix`` is added to the name
    (``SecretsInEnvironment("FLOWBOT_SECRET_")`` reads ``%(secret:token)s`` from
    ``FLOWBOT_SECRET_token``)."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix

    def get(self, name: str) -> str | None:
        return os.environ.get(self.prefix + name)

    def __repr__(self) -> str:
        return f"SecretsInEnvironment({self.prefix!r})"


def lookup(providers: list[SecretProvider], name: str) -> str:
    """The secret from the first provider that has it.

    Raises:
        KeyError: no provider knows it.
    """
    for provider in providers:
        value = provider.get(name)
        if value is not None:
            return value
    raise KeyError(name)


REDACTED = "<secret>"


def redact(text: str, secrets: set[str]) -> str:
    """``text`` with every occurrence of each secret replaced, longest first."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return text
