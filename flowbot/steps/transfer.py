"""Steps that move files between the worker and the master: ``FileUpload``, ``DirectoryUpload``,
``FileDownload``. Transfers are chunked with flow control and checked by SHA-256."""

from __future__ import annotations

from typing import Any

from ..results import Result
from .base import BuildContext, Step


def _on_worker(workdir: str, path: str) -> str:
    return path if path.startswith("/") else f"{workdir}/{path}"


class FileUpload(Step):
    """Copy ``workersrc`` (relative to ``workdir``) to ``masterdest`` (relative to the master's
    directory); a missing file fails the step cleanly.

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
            source, str(build.render(self.masterdest)), directory=self.directory, max_size=self.max_size
        )
        return Result.SUCCESS if outcome.rc == 0 else Result.FAILURE


class DirectoryUpload(FileUpload):
    """Copy the directory ``workersrc`` to the directory ``masterdest`` on the master."""

    default_name = "upload directory"
    directory = True


class FileDownload(Step):
    """Copy ``mastersrc`` (relative to the master's directory) to ``workerdest`` (relative to
    ``workdir``), with ``mode`` if given."""

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
        outcome = await build.download(str(build.render(self.mastersrc)), destination, mode=self.mode)
        return Result.SUCCESS if outcome.rc == 0 else Result.FAILURE
