"""Schedulers: they decide which builders build which source, and when."""

from ..records import BuildsetSpec
from .base import Classification, Scheduler
from .basic import AnyBranchScheduler, ChangeScheduler, SingleBranchScheduler
from .filter import ChangeFilter
from .force import ForceScheduler
from .parameters import BoolParameter, ChoiceParameter, IntParameter, Parameter, StringParameter
from .timed import Nightly, Periodic, TimedScheduler
from .triggerable import Dependent, Triggerable

__all__ = [
    "AnyBranchScheduler",
    "BoolParameter",
    "BuildsetSpec",
    "ChangeFilter",
    "ChangeScheduler",
    "ChoiceParameter",
    "Classification",
    "Dependent",
    "ForceScheduler",
    "IntParameter",
    "Nightly",
    "Parameter",
    "Periodic",
    "Scheduler",
    "SingleBranchScheduler",
    "StringParameter",
    "TimedScheduler",
    "Triggerable",
]
