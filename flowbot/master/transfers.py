"""The master's ends of file transfers (see :mod:`flowbot_worker.commands.transfer`).

An upload is written to a temporary file beside its destination and moved into place only when
its size and SHA-256 match what the worker read; a directory arrives as a tar that is unpacked
with Python's ``data`` filter, so nothing in it can land outside the destination. A download is
read in chunks as the worker grants credit. Reading a download and unpacking an upload happen off
the event loop, so a large artifact never delays other workers' messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from flowbot_worker.defaults import FILE_CHUNK, FILE_WINDOW

from ..errors import FlowbotError
from ..steps.base import CommandResult
from .tasks import Spawn


class TransferError(FlowbotError):
    """A transfer that cannot go on (out of order chunks, too big, a damaged file, stalled)."""


#: Sends one chunk to the worker: the ``file_data`` content (``seq``, ``final``) and the bytes.
SendChunk = Callable[[dict[str, Any], bytes], None]


class Transfer(Protocol):
    """The master's end of a transfer, as the worker registry drives it."""

    #: When the last chunk or credit moved (``time.monotonic()``); None until the transfer begins.
    progressed: float | None

    def start(self, send: SendChunk) -> None: ...

    def file_data(self, content: dict[str, Any], data: bytes) -> None: ...

    def file_credit(self, credits: int) -> None: ...


class ReceiveFile:
    """Takes an upload's chunks and, when it ends well, puts the file (or directory) in place."""

    def __init__(self, destination: Path, *, directory: bool = False, max_size: int | None = None):
        self.destination = destination
        self.directory = directory
        self.max_size = max_size
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, self._partial = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
        self._file = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self.size = 0
        self._seq = 0
        # The worker may take a while to pack a directory: the clock starts with the first chunk.
        self.progressed: float | None = None

    def file_data(self, content: dict[str, Any], data: bytes) -> None:
        if content.get("seq") != self._seq:
            raise TransferError(f"chunk {content.get('seq')} arrived where {self._seq} was expected; the link broke")
        self.progressed = time.monotonic()
        self._file.write(data)
        self._digest.update(data)
        self.size += len(data)
        self._seq += 1
        if self.max_size is not None and self.size > self.max_size:
            raise TransferError(f"upload is larger than max_size={self.max_size} bytes")

    def file_credit(self, credits: int) -> None:
        """Uploads only receive."""

    def start(self, send: SendChunk) -> None:
        """Uploads only receive."""

    async def finish(self, result: CommandResult) -> str:
        """Check what arrived against the worker's account and put it in place; returns a summary.

        Raises:
            TransferError: it arrived incomplete or damaged.
        """
        self._file.close()
        try:
            if (self.size, self._digest.hexdigest()) != (result.data.get("size"), result.data.get("sha256")):
                raise TransferError(
                    f"upload arrived damaged: {self.size} bytes here, {result.data.get('size')} sent; checksums differ"
                )
            skipped = await asyncio.to_thread(self._put_in_place)
            note = f"; left out what would land outside it: {', '.join(skipped)}" if skipped else ""
            return f"{self.size} bytes -> {self.destination}{note}"
        finally:
            self.abort()

    def _put_in_place(self) -> list[str]:
        """Move the file, or unpack the directory, to the destination; returns the members left out."""
        skipped: list[str] = []
        if self.directory:
            self.destination.mkdir(parents=True, exist_ok=True)
            with tarfile.open(self._partial, "r:gz") as tar:
                tar.extractall(self.destination, filter=_safe_members(skipped))
        else:
            os.replace(self._partial, self.destination)
        return skipped

    def abort(self) -> None:
        """Let go of the partial file (a no-op once it was moved into place)."""
        self._file.close()
        if os.path.exists(self._partial):
            os.unlink(self._partial)


class SendFile:
    """Reads a file in chunks for the worker, as fast as the worker grants credit."""

    def __init__(self, source: Path, *, spawn: Spawn, chunk: int = FILE_CHUNK, window: int = FILE_WINDOW):
        self.source = source
        self._spawn = spawn
        self.chunk = chunk
        self._credit = window
        self._more = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.progressed: float | None = None

    @classmethod
    async def open(cls, source: Path, spawn: Spawn) -> tuple[SendFile, int, str]:
        """A sender for ``source``, with its size and SHA-256 (read once, off the loop).

        Raises:
            TransferError: the file cannot be read.
        """
        try:
            size, digest = await asyncio.to_thread(_measure, source)
        except OSError as exc:
            raise TransferError(f"cannot read {source} on the master: {exc.strerror}") from None
        return cls(source, spawn=spawn), size, digest

    def file_data(self, content: dict[str, Any], data: bytes) -> None:
        raise TransferError("the worker sent file data to a download")

    def file_credit(self, credits: int) -> None:
        self.progressed = time.monotonic()
        self._credit += credits
        self._more.set()

    def start(self, send: SendChunk) -> None:
        self.progressed = time.monotonic()
        self._task = self._spawn(self._pump(send), f"sending {self.source}")

    async def _pump(self, send: SendChunk) -> None:
        seq = 0
        with open(self.source, "rb") as source:
            while True:
                while self._credit <= 0:
                    self._more.clear()
                    await self._more.wait()
                data = await asyncio.to_thread(source.read, self.chunk)
                self._credit -= 1
                final = len(data) < self.chunk
                send({"seq": seq, "final": final}, data)
                seq += 1
                if final:
                    return

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _safe_members(skipped: list[str]) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """Python's ``data`` filter, leaving out (and listing) members it refuses instead of failing."""

    def check(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, destination)
        except tarfile.FilterError as exc:
            skipped.append(f"{member.name} ({type(exc).__name__})")
            return None

    return check


def _measure(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as source:
        while block := source.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def master_path(master_dir: str, path: str, *, absolute: bool = False) -> Path:
    """A path on the master: relative to the master's directory and inside it, or, when
    ``absolute`` allows it, an absolute path as given.

    Raises:
        TransferError: the path leads out of the master's directory (``..``, or an absolute path
            where none is allowed).
    """
    if absolute and os.path.isabs(path):
        return Path(path)
    base = os.path.normpath(master_dir)
    target = os.path.normpath(os.path.join(base, path))
    if os.path.commonpath([base, target]) != base:
        raise TransferError(f"{path!r} leads out of the master's directory; only paths inside it are allowed")
    return Path(target)
