"""Steps that move files between the worker and the master: ``FileUpload``, ``DirectoryUpload``,
``FileDownload``. Transfers are chunked with flow control and checked by SHA-256.

On the master a transfer reaches the artifacts directory and nothing else (``Pipeline(artifacts=)``,
``artifacts`` in the master's directory unless it names another). A path there is written as
before, relative to the master's directory or absolute, and must lead inside the artifacts
directory, without ``..`` and through no symbolic link: whatever a branch name or a property puts
in it, a transfer never reads or overwrites the master's pipeline, its key or its database.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath
from typing import Any

from ..errors import TransferError
from ..fields import PATH, RENDERED_TEXT, TEXT, checked, either, named, optional, whole
from ..results import Result
from .base import BuildContext, Step

#: Where transfers on the master go when the pipeline names no other place (in the master's directory).
ARTIFACTS = "artifacts"


def _on_worker(workdir: str, path: str) -> str:
    return path if path.startswith("/") else f"{workdir}/{path}"


def artifact_path(path: str, *, root: str | os.PathLike, base: str | os.PathLike) -> Path:
    """Where ``path`` leads on the master: relative to ``base`` (the master's directory) unless
    absolute, and inside ``root`` (the artifacts directory, relative to ``base`` unless absolute).
    Judged by the text alone; symbolic links are the master's to check on its disk.

    Raises:
        TransferError: the path leads outside ``root``, or holds ``..``.
    """
    base_dir = os.path.abspath(base)
    root_dir = os.path.normpath(os.path.join(base_dir, root))
    target = os.path.normpath(os.path.join(base_dir, path))
    if os.path.commonpath([root_dir, target]) != root_dir:
        raise TransferError(
            f"{path!r} leads out of the master's artifacts directory {root_dir}: transfers on the master "
            "stay inside it (Pipeline(artifacts=...) names another)"
        )
    if target == root_dir:
        raise TransferError(f"{path!r} is the artifacts directory itself; name a file or directory in it")
    if ".." in PurePath(path).parts:
        raise TransferError(f"{path!r} holds '..': a path on the master names its place inside {root_dir} plainly")
    return Path(target)


def problems(builders: Iterable[Any], artifacts: Any, base: Path) -> Iterator[tuple[str, Any]]:
    """What checkconfig can tell of transfers before any build: a bad artifacts directory, and
    paths on the master, written as plain text, that lead outside it."""
    if not isinstance(artifacts, (str, os.PathLike)) or not str(artifacts):
        yield f"artifacts must be the path of a directory; got {artifacts!r}", None
        return
    root = os.path.normpath(os.path.join(os.path.abspath(base), artifacts))
    if os.path.commonpath([root, os.path.abspath(base)]) == root:
        yield (
            f"artifacts {str(artifacts)!r} holds the master's directory {base}, with its pipeline, key and "
            "database; name a directory of its own (the default is 'artifacts')",
            None,
        )
        return
    for builder in builders:
        for step in getattr(builder, "steps", ()):
            path = step.master_side if isinstance(step, (FileUpload, FileDownload)) else None
            if isinstance(path, (str, os.PathLike)):
                try:
                    artifact_path(str(path), root=artifacts, base=base)
                except TransferError as exc:
                    yield f"{type(step).__name__} {step.name!r}: {exc}", step


class FileUpload(Step):
    """Copy ``workersrc`` (relative to ``workdir``) to ``masterdest``, a path in the master's
    artifacts directory (written relative to the master's directory, or absolute); a missing file
    fails the step cleanly, and so does a ``masterdest`` outside the artifacts directory.

    Args:
        max_size: refuse files larger than this many bytes.
    """

    default_name = "upload"
    directory = False

    @checked(
        workersrc=RENDERED_TEXT,
        masterdest=either(PATH, RENDERED_TEXT),
        workdir=TEXT,
        max_size=optional(whole(minimum=1)),
    )
    def __init__(
        self, workersrc: Any, masterdest: Any, *, workdir: str = "build", max_size: int | None = None, **flags: Any
    ):
        super().__init__(**flags)
        self.workersrc = workersrc
        self.masterdest = masterdest
        self.workdir = workdir
        self.max_size = max_size

    @property
    def master_side(self) -> Any:
        """The path on the master as the pipeline wrote it (checkconfig judges a plain one)."""
        return self.masterdest

    async def run(self, build: BuildContext) -> Result:
        source = _on_worker(self.workdir, str(build.render(self.workersrc)))
        outcome = await build.upload(
            source, str(build.render(self.masterdest)), directory=self.directory, max_size=self.max_size
        )
        return Result.SUCCESS if outcome.rc == 0 else Result.FAILURE


class DirectoryUpload(FileUpload):
    """Copy the directory ``workersrc`` to the directory ``masterdest`` on the master (in its
    artifacts directory, as for :class:`FileUpload`)."""

    default_name = "upload directory"
    directory = True


class FileDownload(Step):
    """Copy ``mastersrc``, a file in the master's artifacts directory (written relative to the
    master's directory, or absolute), to ``workerdest`` (relative to ``workdir``), with ``mode`` if
    given."""

    default_name = "download"

    @checked(
        mastersrc=either(PATH, RENDERED_TEXT),
        workerdest=RENDERED_TEXT,
        workdir=TEXT,
        mode=optional(named(whole(minimum=0, maximum=0o7777), "a file mode such as 0o755")),
    )
    def __init__(
        self, mastersrc: Any, workerdest: Any, *, workdir: str = "build", mode: int | None = None, **flags: Any
    ):
        super().__init__(**flags)
        self.mastersrc = mastersrc
        self.workerdest = workerdest
        self.workdir = workdir
        self.mode = mode

    @property
    def master_side(self) -> Any:
        """The path on the master as the pipeline wrote it (checkconfig judges a plain one)."""
        return self.mastersrc

    async def run(self, build: BuildContext) -> Result:
        destination = _on_worker(self.workdir, str(build.render(self.workerdest)))
        outcome = await build.download(str(build.render(self.mastersrc)), destination, mode=self.mode)
        return Result.SUCCESS if outcome.rc == 0 else Result.FAILURE
