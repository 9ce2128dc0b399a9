"""Reporters: the graph's last nodes, telling people and systems how builds went."""

from .base import MODES, Reporter
from .chat import MatrixNotifier, SlackNotifier
from .github import GitHubStatusPush
from .github_checks import GitHubChecks
from .gitlab import GitLabCommitStatus
from .http_push import HttpStatusPush
from .irc import IRC
from .mail import MailNotifier

__all__ = [
    "MODES",
    "GitHubChecks",
    "GitHubStatusPush",
    "GitLabCommitStatus",
    "HttpStatusPush",
    "IRC",
    "MailNotifier",
    "MatrixNotifier",
    "Reporter",
    "SlackNotifier",
]
