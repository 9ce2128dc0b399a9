"""CURVE keys for an encrypted link: making key files, reading them, and checking keys.

Keys are ZeroMQ's own: 40-character Z85 text, kept in the certificate files that
``zmq.auth.create_certificates`` writes (``NAME.key`` holds the public key, ``NAME.key_secret``
both). The master's side and the worker's side both read them through here, so a key that one
side accepts the other does too. ZeroMQ is imported only when a key is used: pipeline files that
declare keys load without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import KeyFileError

#: Length of a CURVE key as Z85 text (32 bytes).
KEY_LENGTH = 40


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair as Z85 text; ``secret`` stays out of its repr."""

    public: str
    secret: str

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public!r})"


@dataclass(frozen=True)
class ClientKeys:
    """What a worker needs to be a CURVE client: its own key pair and the master's public key."""

    own: KeyPair
    master: str

    def apply(self, sock: Any) -> None:
        """Make ``sock`` (a ZeroMQ socket not yet connected) a CURVE client of the master."""
        sock.curve_secretkey = self.own.secret.encode()
        sock.curve_publickey = self.own.public.encode()
        sock.curve_serverkey = self.master.encode()


def check_key(text: object) -> str:
    """``text`` if it is a CURVE key as Z85 text.

    Raises:
        KeyFileError: it is not one (with what is wrong, and never the text of a secret).
    """
    if not isinstance(text, str):
        raise KeyFileError(f"a CURVE key is text, not {type(text).__name__}")
    if len(text) != KEY_LENGTH:
        raise KeyFileError(f"a CURVE key is {KEY_LENGTH} characters of Z85 text; this one has {len(text)}")
    import struct

    from zmq.utils import z85

    try:
        z85.decode(text)
    except (ValueError, KeyError, struct.error):  # not ASCII, not in the alphabet, out of range
        raise KeyFileError("a CURVE key is Z85 text; this one has characters or values Z85 does not allow") from None
    return text


def load_key_pair(path: str | Path) -> KeyPair:
    """The key pair in a secret key file (``NAME.key_secret``).

    Raises:
        KeyFileError: the file is missing, unreadable, holds no secret key, or keys that do not
            belong together.
    """
    public, secret = _load(path)
    if secret is None:
        raise KeyFileError(f"{path}: no secret-key in it (this looks like a public key file; use NAME.key_secret)")
    if _curve().curve_public(secret.encode()).decode() != public:
        raise KeyFileError(f"{path}: its public-key is not the public half of its secret-key")
    return KeyPair(public, secret)


def key_pair(secret: str) -> KeyPair:
    """The key pair whose secret key is ``secret`` (Z85 text).

    Raises:
        KeyFileError: ``secret`` is not a CURVE key.
    """
    check_key(secret)
    return KeyPair(_curve().curve_public(secret.encode()).decode(), secret)


def public_key(key_or_file: str | Path) -> str:
    """A public key given as Z85 text, or read from a key file (``NAME.key`` or ``NAME.key_secret``).

    Raises:
        KeyFileError: neither a key nor a readable key file.
    """
    text = str(key_or_file).strip()
    if os.path.exists(text):
        return _load(text)[0]
    if len(text) != KEY_LENGTH:
        raise KeyFileError(f"{text}: neither a CURVE key ({KEY_LENGTH} characters of Z85 text) nor a key file")
    return check_key(text)


def create_key(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Make a new key pair as ``directory/NAME.key`` (public) and ``NAME.key_secret`` (mode 0600).

    Returns:
        The paths of the public and the secret key file.

    Raises:
        KeyFileError: a key file of that name exists already, or the files cannot be written.
    """
    _curve()
    import zmq.auth

    directory = Path(directory)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path in (public, secret):
            if path.exists():
                raise KeyFileError(f"{path} exists already; not overwriting it")
        # Made private before any key is in it; zmq.auth then writes into the file as it is.
        secret.touch(mode=0o600, exist_ok=False)
        zmq.auth.create_certificates(directory, name)
    except OSError as exc:
        raise KeyFileError(f"cannot write key files in {directory}: {exc.strerror or exc}") from None
    return public, secret


def _curve() -> Any:
    """The ``zmq`` module, once it is known to support CURVE."""
    import zmq

    if not zmq.has("curve"):
        raise KeyFileError(f"the libzmq {zmq.zmq_version()} that pyzmq uses here has no CURVE support")
    return zmq


def _load(path: str | Path) -> tuple[str, str | None]:
    """The (public, secret or None) keys of a key file, each checked."""
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(path)
    except ValueError:
        raise KeyFileError(f"{path}: not a CURVE key file (no public-key in it)") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read it: {exc.strerror or 'no such file'}") from None
    try:
        checked = check_key(public.decode("ascii", "replace")), secret and check_key(secret.decode("ascii", "replace"))
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    return checked
