"""Schedulers that start builds from changes: one branch, or every branch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..fields import FUNCTION, TEXT, checked, either, instance, number, optional, refuse
from ..records import BuildsetSpec, Change
from .base import Classification, Scheduler, changes_properties, changes_sourcestamps
from .filter import ChangeFilter

#: Which changes a scheduler takes.
CHANGE_FILTER = optional(either(instance(ChangeFilter, "a ChangeFilter"), FUNCTION))


class ChangeScheduler(Scheduler):
    """What the branch schedulers share.

    Args:
        change_filter: which changes to consider (all when None).
        tree_stable_timer: seconds without an important change before building; None builds at once.
        file_is_important: ``fn(change) -> bool``; unimportant changes ride along with the next
            important one instead of starting a build.
    """

    @checked(
        change_filter=CHANGE_FILTER,
        tree_stable_timer=optional(number(minimum=0, unit="seconds")),
        file_is_important=optional(FUNCTION),
    )
    def __init__(
        self,
        name: str,
        builders: Iterable[str],
        *,
        change_filter: ChangeFilter | Callable[[Change], bool] | None = None,
        tree_stable_timer: float | None = None,
        file_is_important: Callable[[Change], bool] | None = None,
        **options: Any,
    ):
        super().__init__(name, builders, **options)
        self.change_filter = change_filter
        self.tree_stable_timer = tree_stable_timer
        self.file_is_important = file_is_important

    def classify(self, change: Change) -> Classification | None:
        return self.filtered(change, self.timer_key(change))

    def timer_key(self, change: Change) -> str:
        return ""

    def changes_buildset(self, changes: list[Change]) -> BuildsetSpec | None:
        last = changes[-1]
        who = f" by {last.author}" if last.author else ""
        count = f" and {len(changes) - 1} earlier" if len(changes) > 1 else ""
        return self.buildset(
            changes_sourcestamps(changes),
            f"{self.name}: change {last.revision or '(no revision)'}{who}{count} on {last.branch or 'default'}",
            properties=changes_properties(changes),
            change_ids=[c.id for c in changes if c.id is not None],
        )


class SingleBranchScheduler(ChangeScheduler):
    """Build the changes of one branch, with one tree-stable timer.

    Give the branch through ``change_filter=ChangeFilter(branch="main")`` or ``branch="main"``.
    """

    @checked(branch=optional(TEXT))
    def __init__(self, name: str, builders: Iterable[str], *, branch: str | None = None, **options: Any):
        both = branch is not None and options.get("change_filter") is not None
        if branch is not None and not both:
            options["change_filter"] = ChangeFilter(branch=branch)
        super().__init__(name, builders, **options)
        if both:
            raise refuse(self, "branch", "give either branch= or change_filter=, not both")
        if self.change_filter is None:
            raise refuse(self, None, "needs a branch: change_filter=ChangeFilter(branch=...) or branch=...")


class AnyBranchScheduler(ChangeScheduler):
    """Build changes on every branch, with a tree-stable timer per branch."""

    def timer_key(self, change: Change) -> str:
        return change.branch or ""
