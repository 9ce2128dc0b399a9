"""The commands a worker runs for its master, by the name the master uses."""

from .base import Command, Outcome
from .shell import ShellCommand

#: Command classes by protocol name.
COMMANDS: dict[str, type[Command]] = {cls.name: cls for cls in (ShellCommand,)}

__all__ = ["COMMANDS", "Command", "Outcome", "ShellCommand"]
