"""Steps: what a builder does, one after another, mostly on a worker."""

from .approval import Approval, Decision
from .base import BuildContext, CommandResult, StartedCommand, Step, StepLog
from .filesystem import MakeDirectory, RemoveDirectory
from .git import Git
from .master import MasterShell, SetProperty
from .shell import SetPropertyFromCommand, Shell
from .transfer import DirectoryUpload, FileDownload, FileUpload
from .trigger import Trigger

__all__ = [
    "Approval",
    "BuildContext",
    "CommandResult",
    "Decision",
    "DirectoryUpload",
    "FileDownload",
    "FileUpload",
    "Git",
    "MakeDirectory",
    "MasterShell",
    "RemoveDirectory",
    "SetProperty",
    "SetPropertyFromCommand",
    "Shell",
    "StartedCommand",
    "Step",
    "StepLog",
    "Trigger",
]
