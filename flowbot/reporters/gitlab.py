"""``GitLabCommitStatus``: commit statuses on GitLab, which merge requests show for their head commit.

A build sets its commit's status (``POST /projects/:id/statuses/:sha``) to ``running`` when it
starts and to its result when it ends, under a name per builder, linking to the build's page. The
project is the build's source stamp's (``group/subgroup/project``, from the project a GitLab hook
names, else from the repository's URL), or is given once for all. A merge request's build marks
its head commit, with its source branch as the ref.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from ..fields import SECONDS, TEXT, checked, either, optional, whole
from ..properties import Renderable
from ..pull_requests import PullRequest
from ..records import Build, SourceStamp
from ..results import Result
from .commit_status import CommitStatusReporter
from .transport import send_json

#: GitLab's states by result.
STATES = {
    Result.SUCCESS: "success",
    Result.WARNINGS: "success",
    Result.SKIPPED: "skipped",
    Result.FAILURE: "failed",
    Result.EXCEPTION: "failed",
    Result.CANCELLED: "canceled",
    Result.RETRY: "pending",  # it runs again
}

_SCP = re.compile(r"^[\w.-]+@[\w.-]+:(?P<path>.+)$")  # git@gitlab.com:group/project.git


def project_path(stamp: SourceStamp) -> str | None:
    """``group/project`` of a source stamp: its project when it looks like one, else its repository's path."""
    if "/" in stamp.project:
        return stamp.project.strip("/")
    scp = _SCP.match(stamp.repository)
    path = (scp.group("path") if scp else urlsplit(stamp.repository).path).strip("/").removesuffix(".git")
    return path if "/" in path else None


class GitLabCommitStatus(CommitStatusReporter):
    """Set commit statuses on GitLab.

    Args:
        token: a token with the ``api`` scope (a secret, best: ``Interpolate("%(secret:gitlab_token)s")``).
        base_url: the server, ``https://gitlab.com`` or your own.
        project: ``group/project`` (or its numeric id) for every build; by default each build's
            source stamp says.
        context: the status's name; ``{builder}`` is replaced, and ``{cell}`` by a matrix cell's values
            (`` (python=3.12, os=mac)``, empty for other builds; default ``flowbot/{builder}{cell}``).
        name, builders, mode, attempts, backoff: as for :class:`~flowbot.reporters.Reporter`.
    """

    started_state = "running"
    states = STATES

    @checked(base_url=TEXT, project=optional(either(TEXT, whole(minimum=1))), context=TEXT, timeout=SECONDS)
    def __init__(
        self,
        token: str | Renderable,
        *,
        base_url: str = "https://gitlab.com",
        project: str | int | None = None,
        context: str = "flowbot/{builder}{cell}",
        timeout: float = 30.0,
        name: str | None = None,
        builders: Iterable[str] | None = None,
        mode: str | Iterable[str] = "all",
        **retry: Any,
    ):
        super().__init__(name, builders=builders, mode=mode, **retry)
        self._token = self.credential("GitLabCommitStatus token", token)
        self.base_url = base_url.rstrip("/")
        self.project = project
        self.context = context
        self.timeout = timeout

    async def set_status(self, build: Build, state: str, description: str) -> None:
        for stamp in build.sourcestamps:
            project = str(self.project) if self.project is not None else project_path(stamp)
            if project is None or not stamp.revision:
                continue
            payload: dict[str, Any] = {
                "state": state,
                "name": self.context.format(builder=build.builder, cell=build.cell_label),
                "description": description[:255],
            }
            ref = _ref(build, stamp)
            if ref:
                payload["ref"] = ref
            if build.url:
                payload["target_url"] = build.url
            await send_json(
                f"{self.base_url}/api/v4/projects/{quote(project, safe='')}/statuses/{stamp.revision}",
                payload,
                headers={"PRIVATE-TOKEN": str(self.render(self._token))},
                timeout=self.timeout,
            )


def _ref(build: Build, stamp: SourceStamp) -> str | None:
    """The branch GitLab files the status under: a merge request's source branch, else the stamp's."""
    values = {name: value[0] for name, value in build.properties.items() if isinstance(value, (list, tuple)) and value}
    request = PullRequest.of(stamp.repository, values)
    if request is not None:
        return request.head_branch or None
    return stamp.branch
