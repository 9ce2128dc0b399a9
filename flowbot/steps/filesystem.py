"""Steps that manage directories on the worker."""

from __future__ import annotations

from typing import Any

from ..fields import RENDERED_TEXT, checked
from ..results import Result
from .base import BuildContext, Step


class MakeDirectory(Step):
    """Create ``dir`` (and its parents) under the builder's directory on the worker."""

    default_name = "mkdir"

    @checked(dir=RENDERED_TEXT)
    def __init__(self, dir: Any, **flags: Any):
        super().__init__(**flags)
        self.dir = dir

    async def run(self, build: BuildContext) -> Result:
        outcome = await build.run_command("mkdir", {"path": build.render(self.dir)})
        return Result.SUCCESS if outcome.rc == 0 else Result.FAILURE


class RemoveDirectory(Step):
    """Remove ``dir`` and everything in it under the builder's directory on the worker."""

    default_name = "rmdir"

    @checked(dir=RENDERED_TEXT)
    def __init__(self, dir: Any, **flags: Any):
        super().__init__(**flags)
        self.dir = dir

    async def run(self, build: BuildContext) -> Result:
        outcome = await build.run_command("rmdir", {"path": build.render(self.dir)})
        return Result.SUCCESS if outcome.rc == 0 else Result.FAILURE
