"""Which requests a new one supersedes (``flowbot/superseding.py``), per builder's ``cancel_superseded``."""

from __future__ import annotations

import pytest

from flowbot.builder import Builder
from flowbot.errors import ConfigError
from flowbot.pull_requests import PullRequest
from flowbot.records import BuildRequest, SourceStamp
from flowbot.superseding import Superseding

REPO = "https://github.com/octo/widgets.git"


def request(
    id: int, builder: str, branch: str, revision: str | None, *, number: int | None = None, **fields
) -> BuildRequest:
    properties = {}
    if number is not None:
        properties = {n: (v, "Change") for n, v in PullRequest(REPO, number).properties().items()}
    stamps = (SourceStamp(repository=REPO, branch=branch, revision=revision),)
    return BuildRequest(id, id, builder, stamps, properties=properties, from_changes=True, **fields)


def superseding(**modes: bool | None) -> Superseding:
    return Superseding([Builder(name, workers=["w"], steps=[], cancel_superseded=mode) for name, mode in modes.items()])


def test_by_default_a_new_head_of_a_pull_request_supersedes_its_older_heads_only():
    rule = superseding(test=None)
    new = request(5, "test", "refs/pull/2/head", "b2", number=2)

    assert rule.reason(new) == "superseded by b2"
    assert rule.supersedes(new, request(1, "test", "refs/pull/2/head", "a1", number=2))
    assert rule.supersedes(new, request(2, "test", "refs/pull/2/merge", "a1", number=2))  # its merge, too
    assert not rule.supersedes(new, request(3, "test", "refs/pull/2/head", "b2", number=2))  # the same head
    assert not rule.supersedes(new, request(4, "test", "refs/pull/3/head", "a1", number=3))  # another one
    assert not rule.supersedes(new, request(6, "test", "refs/pull/2/head", "c3", number=2))  # a newer request
    # A push to a branch supersedes nothing by default
    assert rule.reason(request(7, "test", "main", "m2")) is None


def test_a_merge_requests_new_head_supersedes_its_older_heads_as_a_pull_requests_does():
    rule = superseding(test=None)
    new = request(5, "test", "refs/merge-requests/7/head", "b2", number=7)

    assert rule.supersedes(new, request(1, "test", "refs/merge-requests/7/head", "a1", number=7))
    assert not rule.supersedes(new, request(2, "test", "refs/pull/7/head", "a1", number=8))


def test_a_builder_can_supersede_branch_builds_too_or_nothing():
    branches, never = superseding(deploy=True), superseding(lint=False)
    new = request(5, "deploy", "main", "m2")

    assert branches.reason(new) == "superseded by m2"
    assert branches.supersedes(new, request(1, "deploy", "main", "m1"))
    assert not branches.supersedes(new, request(2, "deploy", "dev", "d1"))
    assert not branches.supersedes(new, request(3, "deploy", "main", "m1", parent_build_id=9))  # triggered
    assert never.reason(request(5, "lint", "refs/pull/2/head", "b2", number=2)) is None


def test_only_what_changes_ask_for_supersedes():
    rule = superseding(test=None)
    forced = BuildRequest(5, 5, "test", (SourceStamp(repository=REPO, branch="refs/pull/2/head", revision="b2"),))
    assert rule.reason(forced) is None


def test_cancel_superseded_is_a_flag():
    with pytest.raises(ConfigError, match="cancel_superseded"):
        Builder("test", workers=["w"], steps=[], cancel_superseded="yes")
