"""Reporters: the graph's last nodes, telling people and systems how builds went."""

from .base import MODES, BuildReport, Reporter, StepReport
from .github import GitHubStatusPush
from .http_push import HttpStatusPush
from .mail import MailNotifier

__all__ = ["MODES", "BuildReport", "GitHubStatusPush", "HttpStatusPush", "MailNotifier", "Reporter", "StepReport"]
