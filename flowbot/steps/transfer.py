"""Steps that move files between the worker and the master: ``FileUpload``, ``DirectoryUpload``,
``FileDownload``. Transfers are chunked with flow control and checked by SHA-256."""

from __future__ import annotations

import os
from typing import Any

from ..properties import Interpolate
from ..results import Result
from .base import BuildContext, Step


def _on_worker(workdir: str, path: str) -> str:
    return path if path.startswith("/") else f"{workdir}/{path}"


def _written_absolute(path: Any) -> bool:
    """Whether the pipeline wrote an absolute path on the master: a rendered value (a branch in an
    ``Interpolate``, say) must not make a relative path leave the master's directory."""
    written = path.fmt if isinstance(path, Interpolate) else path
    return isinstance(written, (str, os.PathLike)) and os.path.isabs(written)


class FileUpload(Step):
    """Copy ``workersrc`` (relative to ``workdir``) to ``masterdest`` (relative to the master's
    directory, and inside it, unless written as an absolute path); a missing file fails the step
    cleanly.

    Args:
        max_size: refuse files larger than this many bytes.
    """

    default_name = "upload"
    directory = False

    def __init__(
        self, workersrc: Any, masterdest: Any, *, workdir: str = "build", max_size: int | None = None, **flags: Any
    ):
        super().__init__(**flags)
        self.workersrc = workersrc
        self.masterdest = masterdest
        self.workdir = workdir
        self.max_size = max_size

    async def run(self, build: BuildContext) -> Result:
        source = _on_worker(self.workdir, str(build.render(self.workersrc)))
        outcome = await build.upload(
            source,
            str(build.render(self.masterdest)),
            directory=self.directory,
            max_size=self.max_size,
            absolute=_written_absolute(self.masterdest),
        )
        return Result.SUCCESS if outcome.rc == 0 else Result.FAILURE


class DirectoryUpload(FileUpload):
    """Copy the directory ``workersrc`` to the directory ``masterdest`` on the master."""

    default_name = "upload directory"
    directory = True


class FileDownload(Step):
    """Copy ``mastersrc`` (relative to the master's directory, and inside it, unless written as an
    absolute path) to ``workerdest`` (relative to ``workdir``), with ``mode`` if given."""

    default_name = "download"

    def __init__(
        self, mastersrc: Any, workerdest: Any, *, workdir: str = "build", mode: int | None = None, **flags: Any
    ):
        super().__init__(**flags)
        self.mastersrc = mastersrc
        self.workerdest = workerdest
        self.workdir = workdir
        self.mode = mode

    async def run(self, build: BuildContext) -> Result:
        destination = _on_worker(self.workdir, str(build.render(self.workerdest)))
        outcome = await build.download(
            str(build.render(self.mastersrc)), destination, mode=self.mode, absolute=_written_absolute(self.mastersrc)
        )
        return Result.SUCCESS if outcome.rc == 0 else Result.FAILURE
