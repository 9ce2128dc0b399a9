"""The files builds stored on the master: listed, and downloaded.

``GET /api/builds/{id}/artifacts`` answers ``{"artifacts": [...]}``: each file's path in the
artifacts directory, size, SHA-256, step, when it was stored, its download ``url``, and whether it
is ``available`` (still the file stored: a later upload to the same place replaces it, and a
file removed by hand is gone).

``GET /api/builds/{id}/artifacts/{path}`` sends the file, a chunk at a time, with its content type
(by its name), length and digest (as the ``ETag``); ``?download=1`` asks the browser to save it.
Only files a build recorded are served, found by the build's own list and opened through no
symbolic link, so no URL reaches anything else on the master's disk. A file served is held to a
sandbox (``Content-Security-Policy: sandbox``, no sniffing): an HTML report can be read in place,
but its scripts never run as the master's own page.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import tornado.iostream

from ..errors import Gone, NotFound
from ..master.controls import download_path
from ..record_json import artifact_json
from ..records import StoredArtifact
from .api import ApiHandler, path_id

if TYPE_CHECKING:
    from .services import WebServices

#: Bytes read and sent at a time.
CHUNK = 256 * 1024

#: Content types of compressed files, which browsers must not take as a compressed body.
_COMPRESSED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}


def content_type(path: str) -> str:
    """The content type of a file by its name (``application/octet-stream`` when unknown)."""
    kind, encoding = mimetypes.guess_type(path, strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


class ArtifactsHandler(ApiHandler):
    async def get(self, build_id: str) -> None:
        build = path_id(build_id, "build")
        await self.reads.store.builds.get(build)  # NotFound for a build that does not exist
        stored = await self.reads.store.steps.artifacts(build)
        root = self.reads.artifacts_dir()
        present = await asyncio.to_thread(lambda: [_unchanged(root, artifact) for artifact in stored])
        self.reply(
            {
                "artifacts": [
                    artifact_json(
                        artifact,
                        content_type=content_type(artifact.path),
                        url=download_path(build, artifact.path),
                        available=not artifact.replaced and there,
                    )
                    for artifact, there in zip(stored, present, strict=True)
                ]
            }
        )


class ArtifactHandler(ApiHandler):
    async def head(self, build_id: str, path: str) -> None:
        await self.get(build_id, path, body=False)

    async def get(self, build_id: str, path: str, body: bool = True) -> None:  # type: ignore[override]
        build = path_id(build_id, "build")
        stored = await self.reads.store.steps.artifacts(build, path)
        if not stored:
            raise NotFound(f"build {build} stored no file at {path!r}")
        artifact = stored[-1]
        file = await asyncio.to_thread(_open, self.reads.artifacts_dir(), artifact)
        try:
            name = path.rsplit("/", 1)[-1]
            disposition = "attachment" if self.get_query_argument("download", "") not in ("", "0") else "inline"
            self.set_header("Content-Type", content_type(path))
            self.set_header("Content-Length", str(artifact.size))
            self.set_header("Content-Disposition", f"{disposition}; filename*=UTF-8''{quote(name)}")
            self.set_header("ETag", f'"{artifact.sha256}"')
            self.set_header("Cache-Control", "private, max-age=0, must-revalidate")
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Content-Security-Policy", "sandbox")
            if self.request.headers.get("If-None-Match") == f'"{artifact.sha256}"':
                self.set_status(304)
                self.clear_header("Content-Length")
                self.finish()
                return
            if not body:
                self.finish()
                return
            while data := await asyncio.to_thread(file.read, CHUNK):
                self.write(data)
                await self.flush()  # the client takes this chunk before the next is read
            self.finish()
        except tornado.iostream.StreamClosedError:
            return  # the client left before the end
        finally:
            file.close()


def _unchanged(root: Path, artifact: StoredArtifact) -> bool:
    """Whether the file is there as it was stored."""
    try:
        found = os.stat(root.joinpath(*artifact.path.split("/")), follow_symlinks=False)
    except OSError:
        return False
    return found.st_mtime_ns == artifact.mtime_ns and found.st_size == artifact.size


def _open(root: Path, artifact: StoredArtifact) -> Any:
    """The file, opened under ``root`` through no symbolic link.

    Raises:
        Gone: it is no longer there, or no longer the file stored.
    """
    parts = artifact.path.split("/")
    if not parts or any(part in ("", ".", "..") for part in parts):
        raise Gone(f"{artifact.path!r} is not a path in the artifacts directory")
    try:
        directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts[:-1]:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
                os.close(directory)
                directory = inner
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=directory)
        finally:
            os.close(directory)
    except OSError:
        raise Gone(f"{artifact.path} is no longer on the master (removed since it was stored)") from None
    file = os.fdopen(fd, "rb")
    found = os.fstat(fd)
    if found.st_mtime_ns != artifact.mtime_ns or found.st_size != artifact.size:
        file.close()
        raise Gone(f"{artifact.path} was replaced since this build stored it (a later upload to the same place)")
    return file


def artifact_routes(services: WebServices) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"services": services}
    return [
        (r"/api/builds/(\d+)/artifacts", ArtifactsHandler, args),
        (r"/api/builds/(\d+)/artifacts/(.+)", ArtifactHandler, args),
    ]
