"""Schedulers: they decide which builders build which source, and when."""

from ..records import BuildsetSpec
from .base import Scheduler
from .basic import AnyBranchScheduler
from .force import ForceScheduler

__all__ = ["AnyBranchScheduler", "BuildsetSpec", "ForceScheduler", "Scheduler"]
