"""File transfers between worker and master, in chunks with credit-based flow control.

The sender may have at most a window of chunks that the receiver has not yet written; the
receiver grants a credit for each chunk it has written. So a large artifact moves at the speed of
the slower side, never fills anyone's memory, and never starves heartbeats on the link. Each
transfer carries its SHA-256, and a download lands under its final name only once it checks out.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from .. import protocol
from ..bodies import FileCredit, FileData
from ..defaults import FILE_CHUNK, FILE_WINDOW
from .base import Command, Outcome


class _Sender(Command):
    """Sends one file to the master as numbered chunks, spending credit."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._credit = int(self.args.get("window") or FILE_WINDOW)
        self._more = asyncio.Event()
        self._stopped: str | None = None

    def file_credit(self, credits: int) -> None:
        self._credit += credits
        self._more.set()

    def interrupt(self, reason: str, grace: float) -> None:
        self._stopped = reason or "interrupted"
        self._more.set()

    async def stream(self, path: Path) -> Outcome:
        chunk = int(self.args.get("chunk") or FILE_CHUNK)
        digest, size, seq = hashlib.sha256(), 0, 0
        with open(path, "rb") as source:
            while True:
                data = source.read(chunk)
                while self._credit <= 0 and self._stopped is None:
                    self._more.clear()
                    await self._more.wait()
                if self._stopped is not None:
                    return Outcome(None, "interrupted", self._stopped)
                self._credit -= 1
                digest.update(data)
                size += len(data)
                final = len(data) < chunk
                self.send(protocol.FILE_DATA, FileData(self.cmd_id, seq, final, data).encode(), (data,))
                seq += 1
                if final:
                    return Outcome(0, data={"size": size, "sha256": digest.hexdigest()})


class UploadFile(_Sender):
    """Send ``args["path"]`` (relative to the builder's directory) to the master."""

    name = "upload_file"

    async def run(self) -> Outcome:
        path = self.resolve(self.args.get("path"))
        if not path.is_file():
            return Outcome(None, "error", f"no such file on the worker: {self.args.get('path')}")
        limit = self.args.get("max_size")
        if limit is not None and path.stat().st_size > limit:
            return Outcome(None, "error", f"{self.args.get('path')} is larger than max_size={limit} bytes")
        return await self.stream(path)


class UploadDirectory(_Sender):
    """Send ``args["path"]`` as a gzipped tar of its contents."""

    name = "upload_directory"

    async def run(self) -> Outcome:
        path = self.resolve(self.args.get("path"))
        if not path.is_dir():
            return Outcome(None, "error", f"no such directory on the worker: {self.args.get('path')}")
        fd, archive = tempfile.mkstemp(prefix=".flowbot-upload-", suffix=".tar.gz", dir=self.basedir)
        os.close(fd)
        try:
            await asyncio.to_thread(_tar, path, archive)
            limit = self.args.get("max_size")
            if limit is not None and os.path.getsize(archive) > limit:
                return Outcome(None, "error", f"{self.args.get('path')} packs to more than max_size={limit} bytes")
            return await self.stream(Path(archive))
        finally:
            os.unlink(archive)


def _tar(directory: Path, archive: str) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for entry in sorted(directory.iterdir()):
            tar.add(entry, arcname=entry.name)


class DownloadFile(Command):
    """Receive a file from the master into ``args["path"]``; ``size`` and ``sha256`` are checked."""

    name = "download_file"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._chunks: asyncio.Queue[FileData | None] = asyncio.Queue()

    def file_data(self, chunk: FileData) -> None:
        self._chunks.put_nowait(chunk)

    def interrupt(self, reason: str, grace: float) -> None:
        self._chunks.put_nowait(None)

    async def run(self) -> Outcome:
        path = self.resolve(self.args.get("path"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        digest, size, seq = hashlib.sha256(), 0, 0
        try:
            with os.fdopen(fd, "wb") as sink:
                while True:
                    chunk = await self._chunks.get()
                    if chunk is None:
                        return Outcome(None, "interrupted", "download interrupted")
                    if chunk.seq != seq:
                        return Outcome(None, "error", f"chunk {chunk.seq} arrived, {seq} was expected")
                    sink.write(chunk.data)
                    digest.update(chunk.data)
                    size += len(chunk.data)
                    seq += 1
                    self.send(protocol.FILE_CREDIT, FileCredit(self.cmd_id).encode())
                    if chunk.final:
                        break
            if size != self.args.get("size") or digest.hexdigest() != self.args.get("sha256"):
                return Outcome(None, "error", f"{path.name} arrived damaged ({size} bytes, checksum mismatch)")
            os.chmod(partial, int(self.args["mode"]) if self.args.get("mode") is not None else 0o644)
            os.replace(partial, path)
            partial = None
            return Outcome(0, data={"size": size, "sha256": digest.hexdigest()})
        finally:
            if partial is not None and os.path.exists(partial):
                os.unlink(partial)
