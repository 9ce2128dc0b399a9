"""Superseded work: a new head of a pull request (or of a branch) cancels the builds of the old ones.

A request is superseded when a newer request of the same builder, made from a change, builds the
same pull request (its base repository and number) or, for builders with
``cancel_superseded=True``, the same branches of the same repositories, at other revisions. What
the old request waits for or runs is then of no use to anyone: waiting, it completes CANCELLED
in the same transaction that stores the new one (so a crash never leaves both waiting); running,
its build is stopped and ends CANCELLED. Both say "superseded by <revision>".

Triggered requests are left to the builds that triggered them (stopping a build stops them too).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from .builder import Builder, revisions, source_key
from .pull_requests import PullRequest
from .records import BuildRequest

#: The property that says a request builds a pull request (looked at before any other, for speed).
PULL_REQUEST_NUMBER = "pr_number"


def pull_request_of(request: BuildRequest) -> PullRequest | None:
    """The pull request ``request`` builds, if it builds one."""
    values = {name: pair[0] for name, pair in request.properties.items()}
    return PullRequest.of_sources(request.sourcestamps, values)


class Superseding:
    """Which builders' new requests supersede older ones, and which older ones they are.

    Args:
        builders: the pipeline's builders, each with its ``cancel_superseded`` choice.
    """

    def __init__(self, builders: Iterable[Builder]):
        self._modes = {builder.name: builder.cancel_superseded for builder in builders}

    def key(self, request: BuildRequest) -> Hashable | None:
        """What requests must share to supersede one another; None when none supersedes it."""
        mode = self._modes.get(request.builder)
        if mode is False or request.parent_build_id is not None:
            return None
        pull_request = pull_request_of(request) if PULL_REQUEST_NUMBER in request.properties else None
        if pull_request is not None:
            return ("pull request", pull_request.key)
        return ("branch", source_key(request)) if mode else None

    def reason(self, new: BuildRequest) -> str | None:
        """What the requests that ``new`` supersedes end with; None when it supersedes none."""
        if not new.from_changes or self.key(new) is None:
            return None
        pull_request = pull_request_of(new)
        stamp = pull_request.source(new.sourcestamps) if pull_request is not None else None
        revision = (stamp or new).revision
        return f"superseded by {revision}" if revision else None

    def supersedes(self, new: BuildRequest, old: BuildRequest) -> bool:
        """Whether ``new`` (whose :meth:`reason` is not None) supersedes ``old``."""
        return (
            old.id < new.id
            and old.builder == new.builder
            and self.key(old) == self.key(new)
            and revisions(old) != revisions(new)
        )
