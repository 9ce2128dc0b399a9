"""The commands a worker runs for its master, by the name the master uses."""

from .base import Command, Outcome
from .filesystem import MakeDirectory, RemoveDirectory
from .git import GitCommand
from .shell import ShellCommand
from .transfer import DownloadFile, UploadDirectory, UploadFile

#: Command classes by protocol name.
COMMANDS: dict[str, type[Command]] = {
    cls.name: cls
    for cls in (ShellCommand, MakeDirectory, RemoveDirectory, UploadFile, UploadDirectory, DownloadFile, GitCommand)
}

__all__ = [
    "COMMANDS",
    "Command",
    "DownloadFile",
    "GitCommand",
    "MakeDirectory",
    "Outcome",
    "RemoveDirectory",
    "ShellCommand",
    "UploadDirectory",
    "UploadFile",
]
