"""Filesystem commands: ``mkdir`` and ``rmdir`` under the builder's directory."""

from __future__ import annotations

import asyncio
import shutil

from .base import Command, Outcome


class MakeDirectory(Command):
    """Create ``args["path"]`` (relative to the builder's directory) with its parents."""

    name = "mkdir"

    async def run(self) -> Outcome:
        self.resolve(self.args.get("path")).mkdir(parents=True, exist_ok=True)
        return Outcome(0)


class RemoveDirectory(Command):
    """Remove ``args["path"]`` (relative to the builder's directory) and everything in it."""

    name = "rmdir"

    async def run(self) -> Outcome:
        path = self.resolve(self.args.get("path"))
        if path == self.basedir.resolve():
            return Outcome(None, "error", "refusing to remove the worker's basedir")
        if not path.exists():
            return Outcome(0)
        try:  # a big tree takes a while: keep the worker's loop free meanwhile
            await asyncio.to_thread(shutil.rmtree, path)
        except OSError as exc:
            return Outcome(None, "error", f"cannot remove {path}: {exc}")
        self.output.write("header", f"removed {path}\n".encode())
        return Outcome(0)
