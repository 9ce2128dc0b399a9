"""``GitHubStatusPush``: commit statuses on GitHub (or GitHub Enterprise) through the REST API.

A build sets its commit's status to ``pending`` when it starts and to its result when it ends, under
a context per builder (``flowbot/unit``), linking to the build's page. With a ``mode`` other than
``"all"`` only the builds it chooses get a status, when they end: no commit is left pending. The repository comes from
the build's source stamp (``https://github.com/OWNER/REPO.git``, ``git@github.com:OWNER/REPO``) or
is given once for all. Builds without a revision (a forced build of a branch tip) have no commit to
mark and are skipped. A pull request's build marks its head commit (its revision), even when it
built the merge.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigError
from ..fields import SECONDS, TEXT, checked, optional
from ..properties import Renderable
from ..records import Build
from ..results import Result
from .base import Reporter
from .commit_status import CommitStatusReporter
from .github_app import GitHubAuth
from .transport import send_json

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


def commits(build: Build, repository: str | None) -> list[tuple[tuple[str, str], str]]:
    """The ``((owner, repo), sha)`` a build's reports go to: each source stamp's revision, in its
    repository (or in ``repository`` when given)."""
    found = []
    for stamp in build.sourcestamps:
        where = owner_and_repo(repository or stamp.repository)
        if where is not None and stamp.revision:
            found.append((where, stamp.revision))
    if not found:
        log.debug("build %s #%d names no GitHub commit; nothing to report", build.builder, build.number)
    return found


def github_auth(reporter: Reporter, token: Any, app_id: Any, private_key: Any, installation_id: Any) -> GitHubAuth:
    """A reporter's GitHub credentials: a token, or a GitHub App's id, private key and installation.

    Raises:
        ConfigError: neither or both, a part of the App's missing, or a value of the wrong type.
    """
    what = type(reporter).__name__
    app = {"app_id": app_id, "private_key": private_key, "installation_id": installation_id}
    given = [name for name, value in app.items() if value is not None]
    if (token is None) == (not given) or (given and len(given) < len(app)):
        raise ConfigError(
            f"{what} needs token=, or app_id=, private_key= and installation_id= (a GitHub App), not both",
            *reporter._where(),
        )
    for name in ("app_id", "installation_id"):
        value = app[name]
        if value is not None and (isinstance(value, bool) or not str(value).isdigit()):
            raise ConfigError(f"{what} {name} must be a number; got {value!r}", *reporter._where())
    return GitHubAuth(
        token=reporter.credential(f"{what} token", token),
        app_id=app_id,
        private_key=reporter.credential(f"{what} private_key", private_key),
        installation_id=installation_id,
        render=reporter.render,
    )


class GitHubStatusPush(CommitStatusReporter):
    """Set commit statuses on GitHub.

    Args:
        token: a token allowed to write statuses (``repo:status``), best as one of the pipeline's
            secrets, ``Interpolate("%(secret:github_token)s")``, rather than written in the
            pipeline. Never logged.
        app_id, private_key, installation_id: a GitHub App's, instead of a token (see
            :class:`~flowbot.reporters.GitHubChecks`).
        base_url: the API root; for GitHub Enterprise ``https://HOST/api/v3``.
        repository: ``OWNER/REPO`` for every build; by default each build's source stamp says.
        context: the status's context; ``{builder}`` is replaced, and ``{cell}`` by a matrix cell's values
            (`` (python=3.12, os=mac)``, empty for other builds; default ``flowbot/{builder}{cell}``).
        name, builders, mode, attempts, backoff: as for :class:`~flowbot.reporters.Reporter`.
    """

    states = STATES

    @checked(base_url=TEXT, repository=optional(TEXT), context=TEXT, timeout=SECONDS)
    def __init__(
        self,
        token: str | Renderable | None = None,
        *,
        app_id: int | str | None = None,
        private_key: str | Renderable | None = None,
        installation_id: int | str | None = None,
        base_url: str = "https://api.github.com",
        repository: str | None = None,
        context: str = "flowbot/{builder}{cell}",
        timeout: float = 30.0,
        name: str | None = None,
        builders: Iterable[str] | None = None,
        mode: str | Iterable[str] = "all",
        **retry: Any,
    ):
        super().__init__(name, builders=builders, mode=mode, **retry)
        self._auth = github_auth(self, token, app_id, private_key, installation_id)
        self.base_url = base_url.rstrip("/")
        self.repository = repository
        self.context = context
        self.timeout = timeout

    async def set_status(self, build: Build, state: str, description: str) -> None:
        for (owner, repo), sha in commits(build, self.repository):
            payload: dict[str, Any] = {
                "state": state,
                "description": description[:140],
                "context": self.context.format(builder=build.builder, cell=build.cell_label),
            }
            if build.url:
                payload["target_url"] = build.url
            await send_json(
                f"{self.base_url}/repos/{owner}/{repo}/statuses/{sha}",
                payload,
                headers=await self._auth.headers(self.base_url, self.timeout),
                timeout=self.timeout,
            )
