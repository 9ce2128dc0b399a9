"""``GitHubHook``: GitHub's pushes, pull requests, ``/retest`` comments and check-run re-runs.

Pushes make a change per new commit; a push that deletes a branch or a tag starts no build, and
neither does ``ping``. A pull request that is opened, reopened, pushed to (``synchronize``), marked
ready for review, given a new base branch, or labelled with the hook's ``retest_label`` makes one
change for its head commit, on the ref GitHub publishes in the base repository (``refs/pull/N/head``,
or ``refs/pull/N/merge`` for the merge into its base); a closed one has its pending requests
cancelled and its running builds stopped. Drafts build only when asked for.

Who may ask for a build again: GitHub only lets people who can write to the repository add labels
and re-run check runs, so those are taken as they come; a comment is taken from the author
associations the hook lists (owners, members and collaborators by default), as GitHub reports
them in the delivery, since anyone may comment on a public repository.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InvalidRequest
from ..fields import FILLED_TEXT, FLAG, TEXT, checked, list_of, optional
from ..pull_requests import PullRequest, build_of_check_run
from ..records import Change
from . import payload as p
from .webhooks import Delivery, Rebuild, Webhook, check_signature

_ZEROS = re.compile(r"^0+$")

#: Pull request actions that make a change for its head.
BUILDING_ACTIONS = ("opened", "reopened", "synchronize", "ready_for_review")

#: Who may ask for a build again with a comment, by default: people GitHub says belong to the repository.
RETEST_FROM = ("OWNER", "MEMBER", "COLLABORATOR")


class GitHubHook(Webhook):
    """GitHub ``push``, ``pull_request``, ``issue_comment`` and ``check_run`` events (and ``ping``),
    at ``POST /hooks/<name>``.

    Args:
        secret: the webhook's secret; when set, ``X-Hub-Signature-256`` must be the HMAC-SHA256
            of the body under it, or the delivery is refused (403).
        name: the last part of the hook's URL.
        merge: build a pull request merged into its base branch (GitHub's ``refs/pull/N/merge``)
            rather than its head alone (``refs/pull/N/head``). Statuses still go to the head commit.
        drafts: build draft pull requests too.
        retest: a comment on a pull request that builds its last change again (None: comments
            build nothing).
        retest_from: the author associations (``OWNER``, ``MEMBER``, ``COLLABORATOR``,
            ``CONTRIBUTOR``...) whose ``retest`` comments count.
        retest_label: a label that, when added to a pull request, builds its head again.
        codebase: the codebase of its changes, when a pipeline builds several repositories.
    """

    delivery_headers = ("x-github-delivery",)

    @checked(
        secret=optional(FILLED_TEXT),
        merge=FLAG,
        drafts=FLAG,
        retest=optional(FILLED_TEXT),
        retest_from=list_of(TEXT, "a list of author associations", single=True),
        retest_label=optional(FILLED_TEXT),
    )
    def __init__(
        self,
        secret: str | None = None,
        name: str = "github",
        *,
        merge: bool = False,
        drafts: bool = False,
        retest: str | None = "/retest",
        retest_from: Iterable[str] = RETEST_FROM,
        retest_label: str | None = None,
        codebase: str = "",
    ):
        super().__init__(name, codebase)
        self.secret = secret
        self.merge = bool(merge)
        self.drafts = bool(drafts)
        self.retest = retest.strip() if retest else None
        self.retest_from = frozenset(
            a.upper() for a in ([retest_from] if isinstance(retest_from, str) else retest_from)
        )
        self.retest_label = retest_label

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        headers = p.lower(headers)
        event = headers.get("x-github-event")
        if not event:
            raise InvalidRequest("not a GitHub delivery: it has no X-GitHub-Event header")
        if self.secret is not None:
            check_signature(self.secret, headers.get("x-hub-signature-256"), body)
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            body = p.form_payload(body)  # GitHub's other content type
        data = p.payload(body)
        if event == "ping":
            return Delivery(note="pong")
        if event == "push":
            return self._push(data)
        if event == "pull_request":
            return self._pull_request(data)
        if event == "issue_comment":
            return self._comment(data)
        if event == "check_run":
            return self._check_run(data)
        return Delivery(note=f"{event!r} events start no builds")

    # -- pushes ---------------------------------------------------------------------------------

    def _push(self, data: dict[str, Any]) -> Delivery:
        ref, branch = p.ref(data)
        if data.get("deleted") or _ZEROS.match(str(data.get("after", ""))):
            return Delivery(note=f"{ref} was deleted; nothing to build")
        repository = p.get(data, "repository", dict)
        changes = []
        for commit in p.commits(data):
            if not commit.get("distinct", True):  # already pushed to another branch: built there
                continue
            changes.append(
                Change(
                    branch=branch,
                    revision=p.commit_id(commit),
                    repository=str(repository.get("html_url") or repository.get("url") or ""),
                    project=str(repository.get("full_name") or ""),
                    codebase=self.codebase,
                    author=p.person(commit.get("author")),
                    committer=p.person(commit.get("committer")),
                    comments=str(commit.get("message") or ""),
                    files=p.files(commit),
                    revlink=str(commit.get("url") or ""),
                    when=p.timestamp(commit.get("timestamp")),
                    properties={"event": "push"},
                )
            )
        return Delivery(changes, "" if changes else f"no new commits on {ref}")

    # -- pull requests ----------------------------------------------------------------------------

    def _pull_request(self, data: dict[str, Any]) -> Delivery:
        action = p.get(data, "action", str)
        request = _pull_request(data)
        number = request.number
        if action == "closed":
            return Delivery(closed=request)
        label = p.get(data, "label.name", str, "")
        builds = (
            action in BUILDING_ACTIONS
            or (action == "edited" and isinstance(p.get(data, "changes.base", dict, None), dict))
            or (action == "labeled" and self.retest_label is not None and label == self.retest_label)
        )
        if not builds:
            return Delivery(note=f"{action!r} pull request events start no builds")
        if p.get(data, "pull_request.draft", bool, False) and not self.drafts:
            return Delivery(note=f"pull request #{number} is a draft; drafts are not built (drafts=True builds them)")
        change = request.change(
            p.get(data, "pull_request.head.sha", str),
            f"refs/pull/{number}/{'merge' if self.merge else 'head'}",
            project=p.get(data, "repository.full_name", str, ""),
            when=p.timestamp(p.get(data, "pull_request.updated_at", str, "")),
            codebase=self.codebase,
            event="pull_request",
            action=action,
        )
        return Delivery([change])

    def _comment(self, data: dict[str, Any]) -> Delivery:
        action = p.get(data, "action", str)
        number = p.get(data, "issue.number", int)
        if self.retest is None or action != "created":
            return Delivery(note=f"{action!r} comment events start no builds")
        if not isinstance(p.get(data, "issue.pull_request", dict, None), dict):
            return Delivery(note=f"#{number} is an issue, not a pull request; its comments start no builds")
        text = p.get(data, "comment.body", str, "").strip()
        if text.splitlines()[:1] != [self.retest]:
            return Delivery(note=f"only a comment {self.retest!r} starts a build")
        who = p.get(data, "comment.user.login", str, "someone")
        association = p.get(data, "comment.author_association", str, "NONE").upper()
        if association not in self.retest_from:
            return Delivery(
                note=f"{who} ({association}) may not build pull request #{number} again; "
                f"only {', '.join(sorted(self.retest_from)) or 'nobody'} may"
            )
        repository = _html_url(data)
        return Delivery(retest=PullRequest(repository, number), note=f"{who} asked for #{number} to be built again")

    def _check_run(self, data: dict[str, Any]) -> Delivery:
        action = p.get(data, "action", str)
        if action != "rerequested":
            return Delivery(note=f"{action!r} check run events start no builds")
        external = p.get(data, "check_run.external_id", str, "")
        build_id = build_of_check_run(external)
        if build_id is None:
            return Delivery(note=f"the check run was not made by flowbot (external id {external!r}); nothing to run")
        rebuild = Rebuild(build_id, p.get(data, "check_run.head_sha", str), p.get(data, "sender.login", str, ""))
        return Delivery(rebuild=rebuild)


def _html_url(data: dict[str, Any]) -> str:
    """The repository's page: what a push's changes name it, and so a pull request's."""
    return p.get(data, "repository.html_url", str)


def _pull_request(data: dict[str, Any]) -> PullRequest:
    """The pull request a ``pull_request`` delivery is about."""
    number = p.get(data, "number", int, None) or p.get(data, "pull_request.number", int)
    base = p.get(data, "pull_request.base.repo.full_name", str, "") or p.get(data, "repository.full_name", str, "")
    head = p.get(data, "pull_request.head.repo.full_name", str, "")  # none when the fork was deleted
    return PullRequest(
        repository=_html_url(data),
        number=number,
        title=p.get(data, "pull_request.title", str, ""),
        url=p.get(data, "pull_request.html_url", str, ""),
        base_branch=p.get(data, "pull_request.base.ref", str),
        head_branch=p.get(data, "pull_request.head.ref", str),
        head_repository=head,
        author=p.get(data, "pull_request.user.login", str, ""),
        fork=head != base,
    )
