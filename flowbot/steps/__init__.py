"""Steps: what a builder does, one after another, mostly on a worker."""

from .base import BuildContext, CommandResult, Step, StepLog
from .shell import Shell

__all__ = ["BuildContext", "CommandResult", "Shell", "Step", "StepLog"]
