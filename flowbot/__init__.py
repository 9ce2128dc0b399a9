"""flowbot: continuous integration as a dataflow graph, at home in Jupyter.

Everything a pipeline author needs is importable from here::

    from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler, ForceScheduler
"""

__version__ = "0.1.0"

from .builder import Builder
from .errors import ConfigError, FlowbotError
from .pipeline import Pipeline
from .records import Build, BuildRequest, Change, SourceStamp
from .results import Result
from .retention import Retention
from .schedulers import AnyBranchScheduler, ForceScheduler, Scheduler
from .steps import Shell, Step
from .workers import Worker

__all__ = [
    "__version__",
    # Pipeline and its parts
    "Pipeline",
    "Worker",
    "Builder",
    "Retention",
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
    # Reading the history
    "History",
    # Errors
    "ConfigError",
    "FlowbotError",
]


def __getattr__(name: str) -> object:
    # The master pulls in Tornado, ZeroMQ and SQLAlchemy, History pandas; pipeline files and the
    # CLI's client commands import flowbot without needing them, so they load only when asked for.
    if name == "Master":
        from .master import Master

        return Master
    if name == "History":
        from .analysis import History

        return History
    raise AttributeError(f"module 'flowbot' has no attribute {name!r}")
