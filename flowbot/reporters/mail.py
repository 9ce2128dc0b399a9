"""``MailNotifier``: mail about finished builds, over SMTP with STARTTLS (or TLS) and login.

The subject says what happened in one line (``FAILURE: unit #12 on main (1a2b3c4)``); the body
lists the build, its steps, a link to its page and the last lines of the log of the step that
failed. The standard library's ``smtplib`` blocks, so it runs on the notifier's own single thread:
a slow mail server delays only mail.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from ..errors import ReportError, ReportRejected
from ..fields import SECONDS, TEXT, checked, instance, list_of, one_of, optional, whole
from ..properties import Renderable
from ..records import Build
from .base import Reporter
from .summary import headline, size, took

TLS_MODES = ("starttls", "ssl", None)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class MailNotifier(Reporter):
    """Mail finished builds to ``to``.

    Args:
        from_addr: the sender, e.g. ``"flowbot <ci@example.com>"``.
        to: the recipients.
        smtp_host, smtp_port: the mail server (587: submission with STARTTLS).
        tls: ``"starttls"`` (upgrade the connection, the default), ``"ssl"`` (TLS from the first
            byte, port 465) or None (plain, for a local relay).
        username, password: log in after TLS when given; the password (best one of the pipeline's
            secrets, ``Interpolate("%(secret:smtp_password)s")``) is never logged.
        ssl_context: how to check the server's certificate (default: the system's trusted CAs).
        timeout: seconds for each SMTP exchange.
        name, builders, mode, attempts, backoff: as for :class:`~flowbot.reporters.Reporter`.
    """

    wants_details = True

    @checked(
        from_addr=TEXT,
        to=list_of(TEXT, "a list of addresses", single=True),
        smtp_host=TEXT,
        smtp_port=whole(minimum=1, maximum=65535),
        tls=one_of(*TLS_MODES),
        username=optional(TEXT),
        ssl_context=optional(instance(ssl.SSLContext, "an ssl.SSLContext")),
        timeout=SECONDS,
    )
    def __init__(
        self,
        from_addr: str,
        to: Iterable[str],
        *,
        smtp_host: str = "localhost",
        smtp_port: int = 587,
        tls: str | None = "starttls",
        username: str | None = None,
        password: str | Renderable | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        name: str | None = None,
        builders: Iterable[str] | None = None,
        mode: str | Iterable[str] = "all",
        **retry: Any,
    ):
        super().__init__(name, builders=builders, mode=mode, **retry)
        self.from_addr = from_addr
        self.to = list(to)
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.tls = tls
        self.username = username
        self._password = self.credential("MailNotifier password", password)
        self.ssl_context = ssl_context
        self.timeout = timeout
        self._executor: ThreadPoolExecutor | None = None

    async def build_finished(self, build: Build) -> None:
        message = self.message(build)
        password = self.render(self._password) or ""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"flowbot-mail-{self.name}")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._send, message, password)

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- the message ------------------------------------------------------------------------------

    def message(self, build: Build) -> EmailMessage:
        """The mail about ``build``."""
        message = EmailMessage()
        message["Subject"] = _one_line(subject(build))
        message["From"] = _one_line(self.from_addr)
        message["To"] = _one_line(", ".join(self.to))
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain="flowbot")
        message.set_content(body(build))
        return message

    # -- sending (on the notifier's thread) -------------------------------------------------------

    def _send(self, message: EmailMessage, password: str) -> None:
        context = self.ssl_context or ssl.create_default_context()
        try:
            if self.tls == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.smtp_host, self.smtp_port, timeout=self.timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout)
            with smtp:
                smtp.ehlo()
                if self.tls == "starttls":
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if self.username is not None:
                    smtp.login(self.username, password)
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise ReportRejected(f"the mail server refused the login of {self.username!r}: {exc.smtp_code}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise _refused([code for code, _ in exc.recipients.values()], exc) from None
        except smtplib.SMTPSenderRefused as exc:
            raise _refused([exc.smtp_code], exc) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ReportError(f"mail via {self.smtp_host}:{self.smtp_port} failed: {exc}") from None


def _refused(codes: list[int], exc: smtplib.SMTPException) -> ReportError:
    """The server's refusal: tried again later when every code is a temporary one (4xx, as greylisting
    answers), given up otherwise."""
    error = ReportError if all(400 <= code < 500 for code in codes) else ReportRejected
    return error(f"the mail server refused the message: {exc}")


#: A mail's subject: the build in one line, ``FAILURE: unit #12 on main (1a2b3c4)``.
subject = headline


def body(build: Build) -> str:
    """The text of a mail about ``build``: what happened, the facts, the steps, the log's end."""
    result = build.result.name if build.result is not None else "RUNNING"
    before = ""
    if build.previous_result is not None and build.previous_result != build.result:
        before = f" (the build before was {build.previous_result.name})"
    lines = [f"Build {build.builder} #{build.number} ended with {result}{before}.", ""]
    facts = [
        ("Builder", build.builder),
        ("Build", f"#{build.number}" + (f"  {build.url}" if build.url else "")),
        ("Result", result),
        ("Reason", build.reason),
        ("Branch", build.branch),
        ("Revision", build.revision),
        ("Worker", build.worker),
        ("Duration", took(build.duration)),
    ]
    lines += [f"{label + ':':<10} {value}" for label, value in facts if value]
    if build.steps:
        lines += ["", "Steps:"]
        for step in build.steps:
            spent = took(step.finished_at - step.started_at) if step.finished_at and step.started_at else ""
            said = f"  {step.summary}" if step.summary else ""
            lines.append(f"  {step.result.name if step.result is not None else '-':<10} {step.name:<24} {spent}{said}")
    if build.artifacts:
        lines += ["", "Artifacts:"]
        for artifact in build.artifacts:
            link = f"  {artifact.url}" if artifact.url else ""
            lines.append(f"  {artifact.path} ({size(artifact.size)}){link}")
    if build.log_tail:
        tail = build.log_tail.rstrip("\n").split("\n")
        lines += ["", f'The last {len(tail)} lines of the log of step "{build.log_step}":', ""]
        lines += ["    " + line for line in tail]
    lines += ["", "-- ", "flowbot"]
    return "\n".join(lines) + "\n"


def _one_line(value: str) -> str:
    """A header value with its control characters made spaces: a branch named with a newline
    neither breaks the mail nor adds a header to it."""
    return _CONTROL.sub(" ", value)
