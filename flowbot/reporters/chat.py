"""Chat rooms: ``SlackNotifier`` (an incoming webhook, with blocks) and ``MatrixNotifier`` (a room).

Each posts one message per finished build: what happened in one line, linked to the build's page,
then the branch, revision, worker and duration, and for a build that failed the last lines of the
log of the step that failed. Any other chat service that takes a webhook needs no code:
``HttpStatusPush(url, body={...})`` fills a template of your own.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from ..defaults import CHAT_ARTIFACTS, CHAT_LOG_LINES
from ..errors import ConfigError
from ..fields import SECONDS, checked
from ..properties import Renderable
from ..records import Build
from ..results import Result
from .base import Reporter
from .summary import headline, size, steps_said, took
from .transport import send_json

#: Characters Slack takes in one section's text.
_SLACK_SECTION = 3000

_MARKS = {
    Result.SUCCESS: "✅",
    Result.WARNINGS: "⚠️",
    Result.FAILURE: "❌",
    Result.EXCEPTION: "💥",
    Result.CANCELLED: "⏹️",
    Result.RETRY: "🔁",
    Result.SKIPPED: "⏭️",
}


def _facts(build: Build) -> list[tuple[str, str]]:
    """The facts of a build worth a line in chat, with a value."""
    facts = [
        ("Branch", build.branch or ""),
        ("Revision", (build.revision or "")[:12]),
        ("Worker", build.worker),
        ("Took", took(build.duration)),
        ("Reason", build.reason),
        ("Steps", steps_said(build)),
    ]
    return [(label, value) for label, value in facts if value]


def _tail(build: Build) -> str:
    """The last lines of the failed step's log, for a build that did not pass ("" otherwise)."""
    if build.result in (Result.SUCCESS, Result.SKIPPED, None) or not build.log_tail:
        return ""
    return "\n".join(build.log_tail.rstrip("\n").split("\n")[-CHAT_LOG_LINES:])


class SlackNotifier(Reporter):
    """Post finished builds to a Slack channel through an incoming webhook, as Block Kit blocks.

    Args:
        webhook_url: the webhook's URL, which is its credential: best one of the pipeline's
            secrets, ``Interpolate("%(secret:slack_webhook)s")`` (never logged).
        timeout: seconds per POST.
        name, builders, mode, attempts, backoff: as for :class:`~flowbot.reporters.Reporter`.
    """

    wants_details = True

    @checked(timeout=SECONDS)
    def __init__(
        self,
        webhook_url: str | Renderable,
        *,
        timeout: float = 30.0,
        name: str | None = None,
        builders: Iterable[str] | None = None,
        mode: str | Iterable[str] = "all",
        **retry: Any,
    ):
        super().__init__(name, builders=builders, mode=mode, **retry)
        self.webhook_url = self.credential("webhook_url", webhook_url)
        if self.webhook_url is None:
            raise ConfigError("SlackNotifier needs the webhook's URL", *self._where())
        self.timeout = timeout

    async def build_finished(self, build: Build) -> None:
        url = self.render(self.webhook_url)
        await send_json(url, self.message(build), timeout=self.timeout, shown="the Slack webhook")

    def message(self, build: Build) -> dict[str, Any]:
        """The webhook's payload: a plain ``text`` for notifications, and the blocks people see."""
        title = _slack(headline(build))
        if build.url:
            title = f"<{build.url}|{title}>"
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{_MARKS.get(build.result, '')} *{title}*"}}
        ]
        facts = _facts(build)
        if facts:
            fields = [{"type": "mrkdwn", "text": f"*{label}*\n{_slack(value)[:1900]}"} for label, value in facts]
            blocks.append({"type": "section", "fields": fields[:10]})
        if build.artifacts:
            links = [
                f"<{a.url}|{_slack(a.path)}> ({size(a.size)})" if a.url else f"{_slack(a.path)} ({size(a.size)})"
                for a in build.artifacts[:CHAT_ARTIFACTS]
            ]
            more = len(build.artifacts) - CHAT_ARTIFACTS
            text = "*Artifacts*\n" + "\n".join(links) + (f"\nand {more} more" if more > 0 else "")
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:_SLACK_SECTION]}})
        tail = _tail(build)
        if tail:
            intro = f"The end of the log of *{_slack(build.log_step or '')}*:\n"
            room = _SLACK_SECTION - len(intro) - 6
            text = _slack(tail)[-room:]
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"{intro}```{text}```"}})
        return {"text": headline(build), "blocks": blocks}


class MatrixNotifier(Reporter):
    """Post finished builds to a Matrix room, as notices (plain text and HTML).

    Args:
        homeserver: the homeserver's base URL, ``https://matrix.example.org``.
        room_id: the room's id, ``!AbCdEf:example.org`` (the bot's account must have joined it).
        access_token: the bot account's access token, best one of the pipeline's secrets,
            ``Interpolate("%(secret:matrix_token)s")`` (never logged).
        timeout: seconds per request.
        name, builders, mode, attempts, backoff: as for :class:`~flowbot.reporters.Reporter`.

    Raises:
        ConfigError: a homeserver that is no http(s) URL, or a room id that is not ``!id:server``.
    """

    wants_details = True

    @checked(timeout=SECONDS)
    def __init__(
        self,
        homeserver: str,
        room_id: str,
        access_token: str | Renderable,
        *,
        timeout: float = 30.0,
        name: str | None = None,
        builders: Iterable[str] | None = None,
        mode: str | Iterable[str] = "all",
        **retry: Any,
    ):
        super().__init__(name or f"MatrixNotifier({room_id})", builders=builders, mode=mode, **retry)
        if not isinstance(homeserver, str) or not homeserver.startswith(("http://", "https://")):
            raise ConfigError(f"homeserver must be an http(s) URL, not {homeserver!r}", *self._where())
        if not isinstance(room_id, str) or not room_id.startswith("!") or ":" not in room_id:
            raise ConfigError(f"room_id must be a room's id, '!id:server', not {room_id!r}", *self._where())
        self.homeserver = homeserver.rstrip("/")
        self.room_id = room_id
        self._token = self.credential("access_token", access_token)
        self.timeout = timeout

    async def build_finished(self, build: Build) -> None:
        # One transaction id per build's end: a retry the homeserver already took is not posted twice.
        transaction = f"flowbot-{build.id}-{int((build.finished_at or 0) * 1000)}"
        url = (
            f"{self.homeserver}/_matrix/client/v3/rooms/{quote(self.room_id, safe='')}"
            f"/send/m.room.message/{transaction}"
        )
        headers = {"Authorization": f"Bearer {self.render(self._token)}"}
        await send_json(url, self.message(build), method="PUT", headers=headers, timeout=self.timeout)

    def message(self, build: Build) -> dict[str, Any]:
        """An ``m.notice`` event's content: plain text, and the same as HTML."""
        line = headline(build)
        facts = _facts(build)
        tail = _tail(build)
        text = "\n".join(
            [line + (f" {build.url}" if build.url else ""), *(f"{label}: {value}" for label, value in facts)]
        )
        title = html.escape(line)
        if build.url:
            title = f'<a href="{html.escape(build.url)}">{title}</a>'
        parts = [f"<p>{_MARKS.get(build.result, '')} <strong>{title}</strong></p>"]
        if facts:
            items = "".join(f"<li>{html.escape(label)}: {html.escape(value)}</li>" for label, value in facts)
            parts.append(f"<ul>{items}</ul>")
        if build.artifacts:
            shown = build.artifacts[:CHAT_ARTIFACTS]
            text += "\n\nArtifacts:\n" + "\n".join(f"{a.path} ({size(a.size)}) {a.url or ''}".rstrip() for a in shown)
            items = "".join(
                f'<li><a href="{html.escape(a.url)}">{html.escape(a.path)}</a> ({size(a.size)})</li>'
                if a.url
                else f"<li>{html.escape(a.path)} ({size(a.size)})</li>"
                for a in shown
            )
            parts.append(f"<p>Artifacts:</p><ul>{items}</ul>")
        if tail:
            text += f"\n\nThe end of the log of {build.log_step}:\n{tail}"
            step = html.escape(build.log_step or "")
            parts.append(
                f"<p>The end of the log of <code>{step}</code>:</p><pre><code>{html.escape(tail)}</code></pre>"
            )
        return {
            "msgtype": "m.notice",
            "body": text,
            "format": "org.matrix.custom.html",
            "formatted_body": "".join(parts),
        }


def _slack(text: str) -> str:
    """``text`` as Slack's mrkdwn takes it: its three control characters escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
