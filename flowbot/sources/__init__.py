"""Change sources: where changes come from (pollers, webhooks, people)."""

from .base import ChangeSource, SourceContext
from .git_poller import GitPoller
from .github import GitHubHook
from .gitlab import GitLabHook
from .webhooks import JsonHook, Webhook

__all__ = ["ChangeSource", "GitHubHook", "GitLabHook", "GitPoller", "JsonHook", "SourceContext", "Webhook"]
