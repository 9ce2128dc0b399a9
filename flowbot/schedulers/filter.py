"""``ChangeFilter``: which changes a scheduler cares about."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import Any

from ..records import Change

Matcher = str | Iterable[str] | Callable[[Any], bool] | None

_ANY = object()


def _matches(wanted: Any, value: Any) -> bool:
    if callable(wanted):
        return bool(wanted(value))
    if wanted is None or isinstance(wanted, str):
        return value == wanted
    return value in set(wanted)


class ChangeFilter:
    """Keep changes whose attributes match; an attribute left out matches anything.

    Each of ``branch``, ``repository``, ``project``, ``codebase`` and ``category`` takes a value
    (``branch=None`` means the default branch only), a list of values, or a predicate.
    ``branch_re`` and friends take a regular expression. ``files`` takes glob patterns: a change
    matches when one of its files matches one of them. ``filter_fn`` sees the whole change.

    >>> ChangeFilter(branch=["main", "release"], files=["src/*.py"])
    """

    _FIELDS = ("branch", "repository", "project", "codebase", "category")

    def __init__(
        self,
        *,
        branch: Matcher = _ANY,  # type: ignore[assignment]
        repository: Matcher = _ANY,  # type: ignore[assignment]
        project: Matcher = _ANY,  # type: ignore[assignment]
        codebase: Matcher = _ANY,  # type: ignore[assignment]
        category: Matcher = _ANY,  # type: ignore[assignment]
        branch_re: str | None = None,
        repository_re: str | None = None,
        project_re: str | None = None,
        files: Iterable[str] | None = None,
        filter_fn: Callable[[Change], bool] | None = None,
    ):
        self.checks: list[tuple[str, Any]] = [
            (name, value)
            for name, value in zip(self._FIELDS, (branch, repository, project, codebase, category), strict=True)
            if value is not _ANY
        ]
        self.patterns: list[tuple[str, re.Pattern[str]]] = [
            (name, re.compile(pattern))
            for name, pattern in (("branch", branch_re), ("repository", repository_re), ("project", project_re))
            if pattern is not None
        ]
        self.files = [files] if isinstance(files, str) else list(files) if files is not None else None
        self.filter_fn = filter_fn

    def __call__(self, change: Change) -> bool:
        for name, wanted in self.checks:
            if not _matches(wanted, getattr(change, name)):
                return False
        for name, pattern in self.patterns:
            if pattern.search(getattr(change, name) or "") is None:
                return False
        if self.files is not None and not any(
            fnmatch.fnmatchcase(path, pattern) for path in change.files for pattern in self.files
        ):
            return False
        return self.filter_fn is None or bool(self.filter_fn(change))

    def __repr__(self) -> str:
        parts = [f"{name}={value!r}" for name, value in self.checks]
        parts += [f"{name}_re={p.pattern!r}" for name, p in self.patterns]
        if self.files is not None:
            parts.append(f"files={self.files!r}")
        return f"ChangeFilter({', '.join(parts)})"
