"""Change sources: where changes come from (pollers, webhooks, people)."""

from .base import ChangeSource, SourceContext

__all__ = ["ChangeSource", "SourceContext"]
