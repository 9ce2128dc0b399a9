"""Where GitHubStatusPush sends statuses."""

from __future__ import annotations

import pytest

from flowbot.reporters.github import owner_and_repo


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ("https://github.com/octo/widgets.git", ("octo", "widgets")),
        ("https://github.com/octo/widgets", ("octo", "widgets")),
        ("git@github.com:octo/widgets.git", ("octo", "widgets")),
        ("ssh://git@ghe.example.com/team/tool.kit.git", ("team", "tool.kit")),
        ("octo/widgets", ("octo", "widgets")),
        ("", None),
        ("widgets", None),
    ],
)
def test_owner_and_repo_from_a_repository_url(repository, expected):
    assert owner_and_repo(repository) == expected
