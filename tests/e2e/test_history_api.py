"""History through the API of a real master: log search, the grid of revisions by builder, and
changes linked to their builds and back."""

from __future__ import annotations

import pytest

from flowbot.errors import InvalidRequest, NotFound

from ..support import finished_builds


@pytest.fixture
def master(master_factory, worker_factory):
    # The README's first pipeline: unit echoes the revision it tests, lint fails
    master = master_factory()
    worker_factory(master, "w1", "change-me")
    worker_factory(master, "w2", "other")
    for revision, who in (("1a2b3c", "alice"), ("4d5e6f", "bob")):
        master.client.sendchange(branch="main", revision=revision, author=who, comments=f"fix by {who}")
    finished_builds(master.client, 4)
    return master


def test_changes_and_builds_link_both_ways(master):
    changes = master.client.request("GET", "/api/changes")["changes"]
    assert [(c["revision"], sorted((b["builder"], b["result"]) for b in c["builds"])) for c in changes] == [
        ("4d5e6f", [("lint", "FAILURE"), ("unit", "SUCCESS")]),
        ("1a2b3c", [("lint", "FAILURE"), ("unit", "SUCCESS")]),
    ]
    first = master.client.request("GET", "/api/changes/1")
    assert (first["author"], first["revision"]) == ("alice", "1a2b3c")
    for build in first["builds"]:
        assert [c["id"] for c in master.client.build(build["id"])["changes"]] == [1]
    with pytest.raises(NotFound, match="no change 99"):
        master.client.request("GET", "/api/changes/99")


def test_the_grid_shows_each_revision_by_builder_newest_first(master):
    grid = master.client.request("GET", "/api/grid", query={"revisions": 10})
    assert grid["builders"] == ["unit", "lint"]
    assert [row["revision"] for row in grid["rows"]] == ["4d5e6f", "1a2b3c"]
    newest = grid["rows"][0]
    assert (newest["branch"], newest["change"]["author"], newest["change"]["comments"]) == ("main", "bob", "fix by bob")
    assert {name: [b["result"] for b in builds] for name, builds in newest["builds"].items()} == {
        "unit": ["SUCCESS"],
        "lint": ["FAILURE"],
    }
    assert len(master.client.request("GET", "/api/grid", query={"revisions": 1})["rows"]) == 1


def test_log_search_finds_lines_across_builds(master):
    found = master.client.request("GET", "/api/search", query={"q": "TESTING 4d5e"})
    assert [(line["builder"], line["step_name"], line["text"]) for line in found["lines"]] == [
        ("unit", "test", "testing 4d5e6f")
    ]
    line = found["lines"][0]
    assert (line["step"], line["log"], line["stream"], line["line"]) == (0, "stdio", "stdout", 2)
    assert master.client.log_lines(line["build_id"], 0, first=line["line"] - 1, count=1)["lines"] == [
        ["o", "testing 4d5e6f"]
    ]
    # (the command in each header line, and what it printed)
    assert len(master.client.request("GET", "/api/search", query={"q": "testing"})["lines"]) == 4
    assert master.client.request("GET", "/api/search", query={"q": "testing", "builder": "lint"})["lines"] == []
    with pytest.raises(InvalidRequest, match="give the text"):
        master.client.request("GET", "/api/search", query={"q": " "})
