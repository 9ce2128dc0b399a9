"""Pull requests (GitHub) and merge requests (GitLab): which proposed change a build is for.

A webhook makes one :class:`~flowbot.records.Change` for a pull request's head commit, of category
:data:`CATEGORY`, whose properties say which pull request it is (:meth:`PullRequest.properties`);
filters, the master and reporters read them back with :meth:`PullRequest.of`. A pull request is
known by its base repository (as its changes name it) and its number.

A check run that flowbot posts for a build names it by its external id (:func:`check_run_id`), so
that GitHub's "Re-run" of the check run finds the build to run again (:func:`build_of_check_run`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .records import Change, SourceStamp

#: The category of the changes a pull request makes.
CATEGORY = "pull_request"

#: The properties of a pull request's changes, and the :class:`PullRequest` field each holds.
PROPERTIES = {
    "pr_number": "number",
    "pr_title": "title",
    "pr_url": "url",
    "pr_base_branch": "base_branch",
    "pr_head_branch": "head_branch",
    "pr_head_repository": "head_repository",
    "pr_author": "author",
    "pr_fork": "fork",
}

_CHECK_RUN_ID = re.compile(r"^flowbot-build-([0-9]{1,18})$")
_MERGE_REF = re.compile(r"^refs/(pull|merge-requests)/[0-9]+/merge$")
_REF = re.compile(r"^refs/(?:pull|merge-requests)/([0-9]+)/(?:head|merge)$")


@dataclass(frozen=True, slots=True)
class PullRequest:
    """One pull request (or merge request), as its changes' properties describe it."""

    #: The base repository, as the pull request's changes name it.
    repository: str
    number: int
    title: str = ""
    #: Its page, for people.
    url: str = ""
    #: The branch it would be merged into.
    base_branch: str = ""
    #: The branch it proposes, in the head repository.
    head_branch: str = ""
    #: Where the proposed commits live (``OWNER/REPO`` or a GitLab project path).
    head_repository: str = ""
    #: Who opened it.
    author: str = ""
    #: Whether the head repository is another than the base one.
    fork: bool = False

    @property
    def key(self) -> str:
        """``REPOSITORY#NUMBER``: what names it among every repository's pull requests."""
        return f"{self.repository}#{self.number}"

    def properties(self) -> dict[str, Any]:
        """The properties of its changes (and so of its builds)."""
        return {name: getattr(self, attribute) for name, attribute in PROPERTIES.items()}

    def change(
        self, revision: str, ref: str, *, project: str, when: float, codebase: str = "", **properties: Any
    ) -> Change:
        """The change of its head commit ``revision``, on ``ref`` of the base repository."""
        return Change(
            branch=ref,
            revision=revision,
            repository=self.repository,
            project=project,
            codebase=codebase,
            author=self.author,
            comments=self.title,
            category=CATEGORY,
            revlink=self.url,
            when=when,
            properties={**properties, **self.properties()},
        )

    @classmethod
    def of(cls, repository: str, properties: Mapping[str, Any]) -> PullRequest | None:
        """The pull request that properties (plain values) describe, or None when they describe none."""
        number = properties.get("pr_number")
        if not isinstance(number, int) or isinstance(number, bool):
            return None
        fields = {attribute: properties[name] for name, attribute in PROPERTIES.items() if name in properties}
        return cls(repository=repository, **fields)

    @classmethod
    def of_sources(cls, sourcestamps: Iterable[SourceStamp], properties: Mapping[str, Any]) -> PullRequest | None:
        """The pull request a build of ``sourcestamps`` with ``properties`` (plain values) is for, or None.

        Its repository is that of the source on the pull request's ref, else of the first source
        that names one (a build of several codebases builds the pull request of one of them).
        """
        number = properties.get("pr_number")
        stamps = [s for s in sourcestamps if s.repository]
        on_ref = [s for s in stamps if (m := _REF.match(s.branch or "")) and int(m.group(1)) == number]
        chosen = (on_ref or stamps)[:1]
        return cls.of(chosen[0].repository, properties) if chosen else None

    def source(self, sourcestamps: Iterable[SourceStamp]) -> SourceStamp | None:
        """Which of ``sourcestamps`` is its head (the first of its repository)."""
        return next((s for s in sourcestamps if s.repository == self.repository), None)


def check_run_id(build_id: int) -> str:
    """The external id of the check run of build ``build_id``."""
    return f"flowbot-build-{build_id}"


def build_of_check_run(external_id: str) -> int | None:
    """The build a check run's external id names, or None when flowbot did not make it."""
    match = _CHECK_RUN_ID.match(external_id)
    return int(match.group(1)) if match else None


def is_merge_ref(ref: str | None) -> bool:
    """Whether ``ref`` is the merge GitHub or GitLab makes of a pull request into its base."""
    return bool(ref and _MERGE_REF.match(ref))
