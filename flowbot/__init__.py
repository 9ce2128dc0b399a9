"""flowbot: continuous integration as a dataflow graph, at home in Jupyter.

Everything a pipeline author needs is importable from here::

    from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler, ForceScheduler
"""

__version__ = "0.1.0"

# Pipeline and its parts
from .builder import Builder

# Errors
from .errors import ConfigError, FlowbotError

# Running it
from .master import Master
from .pipeline import Pipeline

# Records and results
from .records import Build, BuildRequest, Change, SourceStamp
from .results import Result

# Schedulers
from .schedulers import AnyBranchScheduler, ForceScheduler, Scheduler

# Steps
from .steps import Shell, Step
from .workers import Worker

__all__ = [
    "__version__",
    # Pipeline and its parts
    "Pipeline",
    "Worker",
    "Builder",
    # Schedulers
    "AnyBranchScheduler",
    "ForceScheduler",
    "Scheduler",
    # Steps
    "Shell",
    "Step",
    # Records and results
    "Build",
    "BuildRequest",
    "Change",
    "SourceStamp",
    "Result",
    # Running it
    "Master",
    # Errors
    "ConfigError",
    "FlowbotError",
]
