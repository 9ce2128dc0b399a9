"""``GitHubStatusPush``: commit statuses on GitHub (or GitHub Enterprise) through the REST API.

A build sets its commit's status to ``pending`` when it starts and to its result when it ends, under
a context per builder (``flowbot/unit``), linking to the build's page. With a ``mode`` other than
``"all"`` only the builds it chooses get a status, when they end: no commit is left pending. The repository comes from
the build's source stamp (``https://github.com/OWNER/REPO.git``, ``git@github.com:OWNER/REPO``) or
is given once for all. Builds without a revision (a forced build of a branch tip) have no commit to
mark and are skipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from ..properties import Renderable
from ..records import Build
from ..results import Result
from .base import Reporter
from .transport import post_json

log = logging.getLogger(__name__)

#: GitHub's states by result: what a person should read from the commit's mark.
STATES = {
    Result.SUCCESS: "success",
    Result.WARNINGS: "success",
    Result.SKIPPED: "success",
    Result.FAILURE: "failure",
    Result.EXCEPTION: "error",
    Result.CANCELLED: "error",
    Result.RETRY: "pending",  # it runs again
}

_REPOSITORY = re.compile(r"(?:^|[/:])([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")


def owner_and_repo(repository: str) -> tuple[str, str] | None:
    """``("OWNER", "REPO")`` from a repository URL or ``OWNER/REPO``, or None."""
    match = _REPOSITORY.search(repository.strip())
    return (match.group(1), match.group(2)) if match else None


class GitHubStatusPush(Reporter):
    """Set commit statuses on GitHub.

    Args:
        token: a token allowed to write statuses (``repo:status``), best as one of the pipeline's
            secrets, ``Interpolate("%(secret:github_token)s")``, rather than written in the
            pipeline. Never logged.
        base_url: the API root; for GitHub Enterprise ``https://HOST/api/v3``.
        repository: ``OWNER/REPO`` for every build; by default each build's source stamp says.
        context: the status's context; ``{builder}`` is replaced (default ``flowbot/{builder}``).
        name, builders, mode, attempts, backoff: as for :class:`~flowbot.reporters.Reporter`.
    """

    def __init__(
        self,
        token: str | Renderable,
        *,
        base_url: str = "https://api.github.com",
        repository: str | None = None,
        context: str = "flowbot/{builder}",
        timeout: float = 30.0,
        name: str | None = None,
        builders: Iterable[str] | None = None,
        mode: str | Iterable[str] = "all",
        **retry: Any,
    ):
        super().__init__(name, builders=builders, mode=mode, **retry)
        self._token = self.credential("GitHubStatusPush token", token)
        self.base_url = base_url.rstrip("/")
        self.repository = repository
        self.context = context
        self.timeout = timeout

    async def build_started(self, build: Build) -> None:
        await self._set(build, "pending", f"build #{build.number} started")

    async def build_finished(self, build: Build) -> None:
        assert build.result is not None
        seconds = f" in {build.duration:.0f} s" if build.duration is not None else ""
        await self._set(build, STATES[build.result], f"build #{build.number}: {build.result.name}{seconds}")

    async def _set(self, build: Build, state: str, description: str) -> None:
        for (owner, repo), sha in self._commits(build):
            payload: dict[str, Any] = {
                "state": state,
                "description": description[:140],
                "context": self.context.format(builder=build.builder),
            }
            if build.url:
                payload["target_url"] = build.url
            await post_json(
                f"{self.base_url}/repos/{owner}/{repo}/statuses/{sha}",
                payload,
                headers={
                    "Authorization": f"Bearer {self.render(self._token)}",
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": "2022-11-28",
                },
                timeout=self.timeout,
            )

    def _commits(self, build: Build) -> list[tuple[tuple[str, str], str]]:
        """The (repository, commit) pairs a build's statuses go to."""
        commits = []
        stamps = build.sourcestamps or ()
        for stamp in stamps:
            where = owner_and_repo(self.repository or stamp.repository)
            if where is not None and stamp.revision:
                commits.append((where, stamp.revision))
        if not commits:
            log.debug("%s: build %s #%d names no GitHub commit; no status set", self.name, build.builder, build.number)
        return commits
