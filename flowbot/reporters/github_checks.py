"""``GitHubChecks``: check runs on GitHub (the Checks API), where pull requests are reviewed.

A build's check run goes to its head commit (each source stamp's revision): ``in_progress`` when
the build starts, ``completed`` when it ends, with a conclusion from its result, a title, a
Markdown summary of its steps and failing tests, the last lines of the log of the step that failed,
a link to the build's page, and an annotation for each failing test whose report says (or whose
traceback shows) where it is. GitHub takes 50 annotations a request: the rest follow in further
requests. The check run names its build (its external id), so GitHub's "Re-run" reaches
:class:`~flowbot.sources.GitHubHook`, which runs the build again.

A report that fails is tried again by the master with back-off, and resumes where it stopped: no
annotation is sent twice. Only GitHub Apps may write check runs: authenticate as one (``app_id``,
``private_key``, ``installation_id``) or with a token of one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..defaults import GITHUB_ANNOTATIONS_PER_REQUEST, REPORT_FAILED_TESTS, REPORT_QUEUE
from ..errors import ReportError
from ..fields import SECONDS, TEXT, checked, optional
from ..junit import TestCase
from ..properties import Renderable
from ..pull_requests import check_run_id
from ..records import Build
from ..results import Result
from .base import Reporter
from .github import commits, github_auth
from .transport import send_json

#: Check run conclusions by result (a RETRY build ends, and its request runs again in a new one).
CONCLUSIONS = {
    Result.SUCCESS: "success",
    Result.WARNINGS: "neutral",
    Result.FAILURE: "failure",
    Result.SKIPPED: "skipped",
    Result.EXCEPTION: "failure",
    Result.CANCELLED: "cancelled",
    Result.RETRY: "neutral",
}

_MARKS = {"SUCCESS": "✅", "WARNINGS": "⚠️", "FAILURE": "❌", "SKIPPED": "⏭️", "EXCEPTION": "💥", "CANCELLED": "⛔"}

#: GitHub's limits on a check run's texts, in characters.
_SUMMARY_MAX = _TEXT_MAX = 65_000
_MESSAGE_MAX = 60_000


@dataclass(slots=True)
class _Run:
    """A check run being reported: its id once made, and how many batches of annotations went out."""

    id: int | None = None
    batches_sent: int = 0


class GitHubChecks(Reporter):
    """Post a check run per build and commit on GitHub.

    Args:
        token: an App's installation token (a secret, best); or instead:
        app_id, private_key, installation_id: the GitHub App's id, its PEM private key (a secret,
            ``Interpolate("%(secret:github_app_key)s")``), and its installation's id.
        base_url: the API root; for GitHub Enterprise ``https://HOST/api/v3``.
        repository: ``OWNER/REPO`` for every build; by default each build's source stamp says.
        name: the check run's name; ``{builder}`` is replaced, and ``{cell}`` by a matrix cell's values
            (`` (python=3.12, os=mac)``, empty for other builds; default ``flowbot/{builder}{cell}``).
        builders, mode, attempts, backoff: as for :class:`~flowbot.reporters.Reporter`.

    Raises:
        ConfigError: no credentials, or both kinds.
    """

    wants_details = True
    wants_tests = True

    @checked(base_url=TEXT, repository=optional(TEXT), name=TEXT, timeout=SECONDS)
    def __init__(
        self,
        token: str | Renderable | None = None,
        *,
        app_id: int | str | None = None,
        private_key: str | Renderable | None = None,
        installation_id: int | str | None = None,
        base_url: str = "https://api.github.com",
        repository: str | None = None,
        name: str = "flowbot/{builder}{cell}",
        timeout: float = 30.0,
        builders: Iterable[str] | None = None,
        mode: str | Iterable[str] = "all",
        **retry: Any,
    ):
        super().__init__(name, builders=builders, mode=mode, **retry)
        self._auth = github_auth(self, token, app_id, private_key, installation_id)
        self.base_url = base_url.rstrip("/")
        self.repository = repository
        self.check_name = name
        self.timeout = timeout
        #: Check runs of builds started and not yet reported finished, by build id and commit.
        self._runs: OrderedDict[int, dict[tuple[str, str, str], _Run]] = OrderedDict()

    async def build_started(self, build: Build) -> None:
        runs = self._runs_of(build)
        for (owner, repo), sha in commits(build, self.repository):
            run = runs.setdefault((owner, repo, sha), _Run())
            if run.id is not None:
                continue  # made by an attempt that failed later
            body = {
                **self._identity(build, sha),
                "status": "in_progress",
                "started_at": _iso(build.started_at),
                "output": {"title": f"{build.builder} #{build.number} is running", "summary": _running(build)},
            }
            run.id = await self._make(owner, repo, body)

    async def build_finished(self, build: Build) -> None:
        assert build.result is not None
        runs = self._runs_of(build)
        title, summary, text = _title(build), _summary(build), _text(build)
        batches = _batches([a for case in build.failed_tests if (a := _annotation(case)) is not None])
        for (owner, repo), sha in commits(build, self.repository):
            run = runs.setdefault((owner, repo, sha), _Run())
            for number, batch in enumerate(batches):
                if number < run.batches_sent:
                    continue  # sent by an attempt that failed later
                output = {"title": title, "summary": summary, "annotations": batch}
                if text:
                    output["text"] = text
                if number == 0:
                    body: dict[str, Any] = {
                        "status": "completed",
                        "conclusion": _conclusion(build),
                        "completed_at": _iso(build.finished_at or build.started_at),
                        "output": output,
                    }
                    if build.url:
                        body["details_url"] = build.url
                else:
                    body = {"output": output}
                if run.id is None:  # its start was never reported (a master started since, say)
                    body = {**self._identity(build, sha), "started_at": _iso(build.started_at), **body}
                    run.id = await self._make(owner, repo, body)
                else:
                    await self._send("PATCH", f"/repos/{owner}/{repo}/check-runs/{run.id}", body)
                run.batches_sent = number + 1
        self._runs.pop(build.id, None)

    def _runs_of(self, build: Build) -> dict[tuple[str, str, str], _Run]:
        runs = self._runs.setdefault(build.id, {})
        self._runs.move_to_end(build.id)
        while len(self._runs) > REPORT_QUEUE:  # builds whose end never came (their reports given up)
            self._runs.popitem(last=False)
        return runs

    def _identity(self, build: Build, sha: str) -> dict[str, Any]:
        identity = {
            "name": self.check_name.format(builder=build.builder, cell=build.cell_label),
            "head_sha": sha,
            "external_id": check_run_id(build.id),
        }
        if build.url:
            identity["details_url"] = build.url
        return identity

    async def _make(self, owner: str, repo: str, body: dict[str, Any]) -> int:
        answer = await self._send("POST", f"/repos/{owner}/{repo}/check-runs", body)
        try:
            return int(json.loads(answer)["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"GitHub's answer to a new check run has no id ({exc!r})") from None

    async def _send(self, method: str, path: str, body: dict[str, Any]) -> bytes:
        headers = await self._auth.headers(self.base_url, self.timeout)
        _, answer = await send_json(self.base_url + path, body, method=method, headers=headers, timeout=self.timeout)
        return answer


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conclusion(build: Build) -> str:
    """The check run's conclusion: by result, and ``timed_out`` for a failure that a timeout made."""
    assert build.result is not None
    timed_out = any(s.result == Result.FAILURE and s.summary.startswith("timed out") for s in build.steps)
    return "timed_out" if build.result == Result.FAILURE and timed_out else CONCLUSIONS[build.result]


def _running(build: Build) -> str:
    return f"Build [{build.builder} #{build.number}]({build.url or ''}) is running on `{build.worker}`."


def _title(build: Build) -> str:
    assert build.result is not None
    tests = len(build.failed_tests)
    if tests:
        more = "+" if tests >= REPORT_FAILED_TESTS else ""
        return f"{build.result.name}: {tests}{more} failing test{'s' * (tests != 1)}"
    if build.result == Result.RETRY:
        return "RETRY: the build runs again"
    seconds = f" in {build.duration:.0f} s" if build.duration is not None else ""
    return f"{build.result.name}{seconds}"


def _summary(build: Build) -> str:
    """The build's steps, and its failing tests, in Markdown."""
    assert build.result is not None
    link = f"[{build.builder} #{build.number}]({build.url})" if build.url else f"{build.builder} #{build.number}"
    lines = [f"**{link}**: {build.result.name} on `{build.worker}`", ""]
    if build.steps:
        lines += ["| | step | result | time |", "|---|---|---|---|"]
        for step in build.steps:
            result = step.result.name if step.result is not None else "not run"
            took = (
                f"{step.finished_at - step.started_at:.1f} s"
                if step.started_at is not None and step.finished_at is not None
                else ""
            )
            said = f" ({_cell(step.summary)})" if step.summary else ""
            lines.append(f"| {_MARKS.get(result, '')} | {_cell(step.name)} | {result}{said} | {took} |")
    if build.failed_tests:
        lines += ["", f"### Failing tests ({len(build.failed_tests)})", ""]
        for case in build.failed_tests:
            where = f" ({case.file}:{case.line})" if case.file and case.line else f" ({case.file})" if case.file else ""
            first = case.message.strip().splitlines()[0] if case.message.strip() else case.outcome.value
            lines.append(f"- `{_test_name(case)}`{where}: {_cell(first)[:200]}")
    return _cut("\n".join(lines), _SUMMARY_MAX)


def _text(build: Build) -> str:
    """The last lines of the log of the step that ended the build, as a code block."""
    if not build.log_tail or build.result in (Result.SUCCESS, Result.SKIPPED):
        return ""
    return _cut(f"Last lines of `{build.log_step}`:\n\n```\n{build.log_tail}\n```", _TEXT_MAX)


def _annotation(case: TestCase) -> dict[str, Any] | None:
    """The annotation of a failing test, when it is known where the test is."""
    if not case.file:
        return None
    line = case.line or 1
    return {
        "path": case.file,
        "start_line": line,
        "end_line": line,
        "annotation_level": "failure",
        "title": _test_name(case)[:255],
        "message": _cut(case.message or f"{case.name} {case.outcome.value}", _MESSAGE_MAX),
    }


def _batches(annotations: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Annotations in requests of :data:`GITHUB_ANNOTATIONS_PER_REQUEST`; one (empty) at least."""
    size = GITHUB_ANNOTATIONS_PER_REQUEST
    return [annotations[n : n + size] for n in range(0, len(annotations), size)] or [[]]


def _test_name(case: TestCase) -> str:
    return ".".join(part for part in (case.classname, case.name) if part)


def _cell(text: str) -> str:
    """Text for a Markdown table cell or list item."""
    return text.replace("|", "\\|").replace("\n", " ")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
