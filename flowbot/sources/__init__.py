"""Change sources: where changes come from (pollers, webhooks, people)."""

from .base import ChangeSource, SourceContext
from .git_poller import GitPoller

__all__ = ["ChangeSource", "GitPoller", "SourceContext"]
