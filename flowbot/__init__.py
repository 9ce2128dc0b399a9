"""flowbot: continuous integration as a dataflow graph, at home in Jupyter.

Everything a pipeline author needs is importable from here::

    from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler, ForceScheduler
"""

__version__ = "0.1.0"

from .auth import Auth
from .builder import Builder
from .errors import ConfigError, FlowbotError
from .launchers import Launcher
from .locks import MasterLock, WorkerLock
from .matrix import Matrix
from .pipeline import Pipeline
from .properties import Interpolate, Properties, Property, renderer
from .records import Build, BuildRequest, Change, SourceStamp
from .reporters import (
    IRC,
    GitHubChecks,
    GitHubStatusPush,
    GitLabCommitStatus,
    HttpStatusPush,
    MailNotifier,
    MatrixNotifier,
    Reporter,
    SlackNotifier,
)
from .results import Result
from .retention import Retention
from .retry import Retry
from .roles import Role
from .schedulers import (
    AnyBranchScheduler,
    BoolParameter,
    ChangeFilter,
    ChoiceParameter,
    Dependent,
    ForceScheduler,
    IntParameter,
    Nightly,
    Periodic,
    Scheduler,
    SingleBranchScheduler,
    StringParameter,
    Triggerable,
)
from .secrets import SecretsInDirectory, SecretsInEnvironment
from .sources import ChangeSource, GitHubHook, GitLabHook, GitPoller, JsonHook
from .sso import OpenIDConnect, ProxyHeader
from .steps import (
    Approval,
    DirectoryUpload,
    FileDownload,
    FileUpload,
    Git,
    MakeDirectory,
    MasterShell,
    RemoveDirectory,
    SetProperty,
    SetPropertyFromCommand,
    Shell,
    Step,
    Trigger,
)
from .workers import DockerWorker, KubernetesWorker, LocalWorker, Worker

__all__ = [
    "__version__",
    # Pipeline and its parts
    "Pipeline",
    "Worker",
    "Builder",
    "Matrix",
    # Workers started on demand
    "LocalWorker",
    "DockerWorker",
    "KubernetesWorker",
    "Launcher",
    # Change sources
    "ChangeSource",
    "GitPoller",
    "GitHubHook",
    "GitLabHook",
    "JsonHook",
    "Retention",
    # Schedulers
    "AnyBranchScheduler",
    "SingleBranchScheduler",
    "ChangeFilter",
    "ForceScheduler",
    "StringParameter",
    "IntParameter",
    "BoolParameter",
    "ChoiceParameter",
    "Periodic",
    "Nightly",
    "Triggerable",
    "Dependent",
    "Scheduler",
    # Steps
    "Shell",
    "Git",
    "SetProperty",
    "SetPropertyFromCommand",
    "Trigger",
    "MasterShell",
    "FileUpload",
    "DirectoryUpload",
    "FileDownload",
    "MakeDirectory",
    "RemoveDirectory",
    "Approval",
    "Step",
    # Retries
    "Retry",
    # Properties and secrets
    "Interpolate",
    "Property",
    "Properties",
    "renderer",
    "SecretsInDirectory",
    "SecretsInEnvironment",
    # Locks
    "MasterLock",
    "WorkerLock",
    # Reporters
    "GitHubChecks",
    "GitHubStatusPush",
    "GitLabCommitStatus",
    "HttpStatusPush",
    "MailNotifier",
    "SlackNotifier",
    "MatrixNotifier",
    "IRC",
    "Reporter",
    # Access control
    "Auth",
    "Role",
    "OpenIDConnect",
    "ProxyHeader",
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
        from .server import Master

        return Master
    if name == "History":
        from .analysis import History

        return History
    raise AttributeError(f"module 'flowbot' has no attribute {name!r}")
