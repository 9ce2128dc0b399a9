"""The master's ends of file transfers (see :mod:`flowbot_worker.commands.transfer`).

Every path on the master is in the artifacts directory (see :mod:`flowbot.steps.transfer`), and
:func:`master_file` checks it on disk too: no symbolic link along the way, and no artifacts
directory that holds the master's own files. An upload is written to a temporary file beside its
destination and moved into place only when its size and SHA-256 match what the worker read; a
directory arrives as a tar that is unpacked with Python's ``data`` filter, so nothing in it can
land outside the destination. A download is opened once, never through a symbolic link, and read
in chunks as the worker grants credit. Reading a download and unpacking an upload happen off
the event loop, so a large artifact never delays other workers' messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, NamedTuple, Protocol

import sqlalchemy as sa
from flowbot_worker.bodies import CommandResult, FileData
from flowbot_worker.defaults import FILE_CHUNK, FILE_WINDOW

from ..errors import TransferError
from ..secrets import SecretsInDirectory
from ..steps.transfer import artifact_path
from .tasks import Spawn

if TYPE_CHECKING:
    from ..pipeline import Pipeline


class StoredFile(NamedTuple):
    """A file an upload put in place."""

    #: Where it is in the upload's destination, with ``/`` ("" for the destination itself).
    path: str
    size: int
    sha256: str
    mtime_ns: int


#: Sends one chunk to the worker: its number (from 0), whether it is the last, and its bytes.
SendChunk = Callable[[int, bool, bytes], None]


class Transfer(Protocol):
    """The master's end of a transfer, as the worker registry drives it."""

    #: When the last chunk or credit moved (``time.monotonic()``); None until the transfer begins.
    progressed: float | None

    def start(self, send: SendChunk) -> None: ...

    def file_data(self, chunk: FileData) -> None: ...

    def file_credit(self, credits: int) -> None: ...


class ReceiveFile:
    """Takes an upload's chunks and, when it ends well, puts the file (or directory) in place."""

    def __init__(self, destination: Path, *, directory: bool = False, max_size: int | None = None):
        self.destination = destination
        self.directory = directory
        self.max_size = max_size
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            fd, self._partial = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
        except OSError as exc:
            raise TransferError(f"cannot write in {destination.parent}: {exc.strerror}") from None
        self._file = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self.size = 0
        #: What it put in place, once finished: ``(path in the destination, size, sha256, mtime_ns)``
        #: for each file ("" for the destination itself when it is one).
        self.stored: list[StoredFile] = []
        self._seq = 0
        # The worker may take a while to pack a directory: the clock starts with the first chunk.
        self.progressed: float | None = None

    def file_data(self, chunk: FileData) -> None:
        if chunk.seq != self._seq:
            raise TransferError(f"chunk {chunk.seq} arrived where {self._seq} was expected; the link broke")
        self.progressed = time.monotonic()
        self._file.write(chunk.data)
        self._digest.update(chunk.data)
        self.size += len(chunk.data)
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
            try:
                skipped = await asyncio.to_thread(self._put_in_place)
            except OSError as exc:
                raise TransferError(f"cannot put the upload in place at {self.destination}: {exc.strerror}") from None
            note = f"; left out what would land outside it: {', '.join(skipped)}" if skipped else ""
            return f"{self.size} bytes -> {self.destination}{note}"
        finally:
            self.abort()

    def _put_in_place(self) -> list[str]:
        """Move the file, or unpack the directory, to the destination; returns the members left out."""
        skipped: list[str] = []
        if self.directory:
            self.destination.mkdir(parents=True, exist_ok=True)
            files: list[str] = []
            with tarfile.open(self._partial, "r:gz") as tar:
                tar.extractall(self.destination, filter=_safe_members(skipped, files))
            for name in sorted(set(files)):
                path = self.destination / name
                with open(path, "rb", opener=_no_link) as file:
                    size, digest = _measure(file)
                self.stored.append(StoredFile(PurePosixPath(name).as_posix(), size, digest, os.stat(path).st_mtime_ns))
        else:
            os.replace(self._partial, self.destination)
            mtime = os.stat(self.destination).st_mtime_ns
            self.stored.append(StoredFile("", self.size, self._digest.hexdigest(), mtime))
        return skipped

    def abort(self) -> None:
        """Let go of the partial file (a no-op once it was moved into place)."""
        self._file.close()
        if os.path.exists(self._partial):
            os.unlink(self._partial)


class SendFile:
    """Reads a file in chunks for the worker, as fast as the worker grants credit."""

    def __init__(
        self, source: Path, file: IO[bytes], *, spawn: Spawn, chunk: int = FILE_CHUNK, window: int = FILE_WINDOW
    ):
        self.source = source
        self._file = file
        self._spawn = spawn
        self.chunk = chunk
        self._credit = window
        self._more = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.progressed: float | None = None

    @classmethod
    async def open(cls, source: Path, spawn: Spawn) -> tuple[SendFile, int, str]:
        """A sender for ``source``, with its size and SHA-256 (read once, off the loop). The file
        is opened here, never through a symbolic link, and what is measured is what is sent.

        Raises:
            TransferError: the file cannot be read, or is a symbolic link.
        """
        try:
            file = open(source, "rb", opener=_no_link)  # noqa: SIM115 (closed by abort)
        except OSError as exc:
            raise TransferError(f"cannot read {source} on the master: {exc.strerror}") from None
        try:
            size, digest = await asyncio.to_thread(_measure, file)
        except OSError as exc:
            file.close()
            raise TransferError(f"cannot read {source} on the master: {exc.strerror}") from None
        return cls(source, file, spawn=spawn), size, digest

    def file_data(self, chunk: FileData) -> None:
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
        with self._file as source:
            while True:
                while self._credit <= 0:
                    self._more.clear()
                    await self._more.wait()
                data = await asyncio.to_thread(source.read, self.chunk)
                self._credit -= 1
                final = len(data) < self.chunk
                send(seq, final, data)
                seq += 1
                if final:
                    return

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        else:
            self._file.close()


def _safe_members(skipped: list[str], files: list[str]) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """Python's ``data`` filter, leaving out (and listing) members it refuses instead of failing, and
    listing the regular files it lets through in ``files``."""

    def check(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
        try:
            kept = tarfile.data_filter(member, destination)
        except tarfile.FilterError as exc:
            skipped.append(f"{member.name} ({type(exc).__name__})")
            return None
        if kept is not None and kept.isfile():
            files.append(kept.name)
        return kept

    return check


def _no_link(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _measure(file: IO[bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while block := file.read(1024 * 1024):
        digest.update(block)
        size += len(block)
    file.seek(0)
    return size, digest.hexdigest()


def own_files(pipeline: Pipeline, master_dir: str | os.PathLike, db_url: str) -> list[Path]:
    """The master's own files and directories, which an artifacts directory must not hold: its
    directory (with the pipeline), its SQLite database, its CURVE key and its secrets."""
    own = [Path(master_dir)]
    url = sa.make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        own.append(Path(url.database))
    if pipeline.curve_key is not None:
        key_base = pipeline.defined_at and pipeline.defined_at.directory
        own.append(Path(key_base or ".") / pipeline.curve_key)
    own += [provider.directory for provider in pipeline.secrets if isinstance(provider, SecretsInDirectory)]
    return own


def master_file(path: str, *, root: str | os.PathLike, base: str | os.PathLike, own: Iterable[Path] = ()) -> Path:
    """Where a transfer's ``path`` is on the master, checked against the disk as well as by its text.

    Args:
        path: as the step gives it: relative to ``base`` (the master's directory), or absolute.
        root: the artifacts directory, relative to ``base`` or absolute.
        own: the master's own files and directories (pipeline, database, key, secrets), which the
            artifacts directory must not hold.

    Raises:
        TransferError: the path leads outside the artifacts directory or through a symbolic link,
            or the artifacts directory holds one of ``own``.
    """
    inside = artifact_path(path, root=root, base=base).relative_to(os.path.normpath(os.path.join(base, root)))
    real_root = artifacts_root(root, base)
    for place in own:
        if os.path.commonpath([real_root, os.path.realpath(place)]) == str(real_root):
            raise TransferError(
                f"the artifacts directory {real_root} holds {place}, which is the master's own; no transfer "
                "is made until Pipeline(artifacts=...) names a directory of its own"
            )
    current = real_root
    for part in inside.parts:
        current = current / part
        if current.is_symlink():
            raise TransferError(
                f"{path!r} goes through a symbolic link ({current}), which a transfer on the master never follows"
            )
    return real_root / inside


def artifacts_root(root: str | os.PathLike, base: str | os.PathLike) -> Path:
    """The artifacts directory ``root`` (relative to ``base``, the master's directory, unless
    absolute), as it really is on disk (symbolic links resolved)."""
    return Path(os.path.realpath(os.path.join(base, root)))
