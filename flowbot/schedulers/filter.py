"""``ChangeFilter``: which changes a scheduler cares about."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import Any

from ..fields import FLAG, FUNCTION, REGEX, TEXT, checked, either, list_of, optional, refuse
from ..pull_requests import PullRequest
from ..records import Change

Matcher = str | Iterable[str] | Callable[[Any], bool] | None

_ANY = object()

#: What an attribute of a change is matched against.
_MATCHER = optional(either(TEXT, FUNCTION, list_of(TEXT)))


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

    ``pull_requests=True`` keeps only the changes of pull requests (and merge requests), ``False``
    only the others; ``base_branch`` (a value, a list or a predicate, as ``branch``) keeps the pull
    requests into that branch, and so only pull requests.

    >>> ChangeFilter(branch=["main", "release"], files=["src/*.py"])
    >>> ChangeFilter(pull_requests=True, base_branch="main")
    """

    _FIELDS = ("branch", "repository", "project", "codebase", "category")

    @checked(
        branch=_MATCHER,
        repository=_MATCHER,
        project=_MATCHER,
        codebase=_MATCHER,
        category=_MATCHER,
        branch_re=optional(REGEX),
        repository_re=optional(REGEX),
        project_re=optional(REGEX),
        files=optional(list_of(TEXT, "a list of glob patterns", single=True)),
        filter_fn=optional(FUNCTION),
        pull_requests=optional(FLAG),
        base_branch=_MATCHER,
    )
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
        pull_requests: bool | None = None,
        base_branch: Matcher = _ANY,  # type: ignore[assignment]
    ):
        if pull_requests is False and base_branch is not _ANY:
            raise refuse(
                self, "base_branch", "base_branch selects pull requests; it cannot go with pull_requests=False"
            )
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
        self.pull_requests = pull_requests
        self.base_branch = base_branch

    def __call__(self, change: Change) -> bool:
        if (self.pull_requests is not None or self.base_branch is not _ANY) and not self._pull_request_matches(change):
            return False
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

    def _pull_request_matches(self, change: Change) -> bool:
        request = PullRequest.of(change.repository, change.properties)
        if self.pull_requests is not None and (request is not None) != self.pull_requests:
            return False
        return self.base_branch is _ANY or (request is not None and _matches(self.base_branch, request.base_branch))

    def __repr__(self) -> str:
        parts = [f"{name}={value!r}" for name, value in self.checks]
        parts += [f"{name}_re={p.pattern!r}" for name, p in self.patterns]
        if self.files is not None:
            parts.append(f"files={self.files!r}")
        if self.pull_requests is not None:
            parts.append(f"pull_requests={self.pull_requests!r}")
        if self.base_branch is not _ANY:
            parts.append(f"base_branch={self.base_branch!r}")
        return f"ChangeFilter({', '.join(parts)})"
