"""Secrets: values a build may use but never shows, stores or logs.

A pipeline lists providers, asked in order: ``%(secret:name)s`` in an ``Interpolate`` renders to
the secret, and every log line of the build has each secret it used replaced by ``<secret>``.
Secrets are not properties: they never reach the store. A property whose value came from one (set
from a rendered secret, or from a command that printed it) keeps it while the build runs, for its
steps to use, but is stored and shown with the secret replaced.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from .fields import FLAG, PATH, TEXT, checked


class SecretProvider(Protocol):
    """Something that knows secrets by name."""

    def get(self, name: str) -> str | None: ...


class SecretsInDirectory:
    """One file per secret, named as the secret (as Docker and Kubernetes mount them)."""

    @checked(directory=PATH, strip=FLAG)
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

    @checked(prefix=TEXT)
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
    """``text`` with every occurrence of each secret replaced, longest first.

    A secret of several lines (a PEM key) is replaced whole where it appears whole, and each of its
    lines wherever they appear on their own: output reaches a log a line at a time.
    """
    if not secrets:  # the usual build, which used none
        return text
    lines = {line for secret in secrets if "\n" in secret for line in secret.splitlines() if line.strip()}
    for piece in sorted({s for s in secrets if s} | lines, key=len, reverse=True):
        text = text.replace(piece, REDACTED)
    return text


def redact_value(value: Any, secrets: set[str]) -> Any:
    """A property value (text, or lists and mappings of them) with the secrets in it replaced."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, (list, tuple)):
        return [redact_value(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: redact_value(item, secrets) for key, item in value.items()}
    return value
