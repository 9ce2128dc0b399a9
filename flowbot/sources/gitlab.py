"""``GitLabHook``: GitLab's pushes, tag pushes and merge requests.

Pushes make a change per new commit; a push that deletes a branch or a tag starts no build. A merge
request that is opened, reopened, pushed to (an update with new commits), marked ready, or
labelled with the hook's ``retest_label`` makes one change for its last commit, on the ref GitLab
publishes in the target project (``refs/merge-requests/N/head``, or ``refs/merge-requests/N/merge``
for the merge into its target branch); a closed or merged one has its pending requests cancelled
and its running builds stopped. Drafts build only when asked for.

GitLab's comment events do not say whether their author may write to the project, so comments
build nothing; a label (which only members can set) does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequest
from ..fields import FILLED_TEXT, FLAG, checked, optional
from ..pull_requests import PullRequest
from ..records import Change
from . import payload as p
from .webhooks import Delivery, Webhook, check_token

_ZEROS = re.compile(r"^0+$")

#: Merge request actions that make a change for its last commit (an update only with new commits).
BUILDING_ACTIONS = ("open", "reopen")


class GitLabHook(Webhook):
    """GitLab push, tag push and merge request events, at ``POST /hooks/<name>``.

    Args:
        token: the webhook's secret token; when set, ``X-Gitlab-Token`` must equal it, or the
            delivery is refused (403).
        name: the last part of the hook's URL.
        merge: build a merge request merged into its target branch (``refs/merge-requests/N/merge``,
            which GitLab keeps for merged-results pipelines) rather than its head alone. Statuses
            still go to the head commit.
        drafts: build draft merge requests too.
        retest_label: a label that, when added to a merge request, builds its last commit again.
        codebase: the codebase of its changes, when a pipeline builds several repositories.
    """

    delivery_headers = ("idempotency-key", "x-gitlab-event-uuid")

    @checked(token=optional(FILLED_TEXT), merge=FLAG, drafts=FLAG, retest_label=optional(FILLED_TEXT))
    def __init__(
        self,
        token: str | None = None,
        name: str = "gitlab",
        *,
        merge: bool = False,
        drafts: bool = False,
        retest_label: str | None = None,
        codebase: str = "",
    ):
        super().__init__(name, codebase)
        self.token = token
        self.merge = bool(merge)
        self.drafts = bool(drafts)
        self.retest_label = retest_label

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        headers = p.lower(headers)
        if self.token is not None:
            check_token(self.token, headers.get("x-gitlab-token"), "X-Gitlab-Token")
        event = headers.get("x-gitlab-event")
        if not event:
            raise InvalidRequest("not a GitLab delivery: it has no X-Gitlab-Event header")
        data = p.payload(body)
        kind = data.get("object_kind")
        if kind in ("push", "tag_push"):
            return self._push(data, kind)
        if kind == "merge_request":
            return self._merge_request(data)
        return Delivery(note=f"{event!r} events start no builds")

    def _push(self, data: dict[str, Any], kind: str) -> Delivery:
        ref, branch = p.ref(data)
        if _ZEROS.match(str(data.get("after", ""))):
            return Delivery(note=f"{ref} was deleted; nothing to build")
        project = data.get("project") if isinstance(data.get("project"), dict) else {}
        repository = data.get("repository") if isinstance(data.get("repository"), dict) else {}
        url = project.get("git_http_url") or repository.get("git_http_url") or repository.get("url") or ""
        changes = [
            Change(
                branch=branch,
                revision=p.commit_id(commit),
                repository=str(url),
                project=str(project.get("path_with_namespace") or repository.get("name") or ""),
                codebase=self.codebase,
                author=p.person(commit.get("author")),
                comments=str(commit.get("message") or ""),
                files=p.files(commit),
                revlink=str(commit.get("url") or ""),
                when=p.timestamp(commit.get("timestamp")),
                properties={"event": kind},
            )
            for commit in p.commits(data)
        ]
        return Delivery(changes, "" if changes else f"no new commits on {ref}")

    def _merge_request(self, data: dict[str, Any]) -> Delivery:
        action = p.get(data, "object_attributes.action", str, "")
        request = _merge_request(data)
        number = request.number
        if action in ("close", "merge"):
            return Delivery(closed=request)
        builds = (
            action in BUILDING_ACTIONS
            or (action == "update" and bool(p.get(data, "object_attributes.oldrev", str, "")))
            or (action == "update" and p.get(data, "changes.draft.current", bool, None) is False)
            or (action == "update" and self.retest_label is not None and self._labelled(data))
        )
        if not builds:
            return Delivery(note=f"{action or 'unknown'!r} merge request events start no builds")
        attributes = p.get(data, "object_attributes", dict)
        if (attributes.get("draft") or attributes.get("work_in_progress")) and not self.drafts:
            return Delivery(note=f"merge request !{number} is a draft; drafts are not built (drafts=True builds them)")
        change = request.change(
            p.get(data, "object_attributes.last_commit.id", str),
            f"refs/merge-requests/{number}/{'merge' if self.merge else 'head'}",
            project=p.get(data, "project.path_with_namespace", str, ""),
            when=p.timestamp(p.get(data, "object_attributes.updated_at", str, "")),
            codebase=self.codebase,
            event="merge_request",
            action=action,
        )
        return Delivery([change])

    def _labelled(self, data: dict[str, Any]) -> bool:
        """Whether this update added the hook's ``retest_label``."""

        def titles(which: str) -> set[str]:
            labels = p.get(data, f"changes.labels.{which}", list, [])
            return {label.get("title") for label in labels if isinstance(label, dict)}

        return self.retest_label in titles("current") - titles("previous")


def _merge_request(data: dict[str, Any]) -> PullRequest:
    """The merge request a ``merge_request`` delivery is about."""
    source = p.get(data, "object_attributes.source_project_id", int, None)
    target = p.get(data, "object_attributes.target_project_id", int, None)
    return PullRequest(
        repository=p.get(data, "project.git_http_url", str),
        number=p.get(data, "object_attributes.iid", int),
        title=p.get(data, "object_attributes.title", str, ""),
        url=p.get(data, "object_attributes.url", str, ""),
        base_branch=p.get(data, "object_attributes.target_branch", str),
        head_branch=p.get(data, "object_attributes.source_branch", str),
        head_repository=p.get(data, "object_attributes.source.path_with_namespace", str, ""),
        author=p.get(data, "user.username", str, ""),
        fork=source is not None and target is not None and source != target,
    )
