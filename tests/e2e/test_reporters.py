"""Reporters against real local servers: an HTTP server that records requests, and an SMTP server."""

from __future__ import annotations

import ssl
import time
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from ..support import finished_builds, free_port, wait_for

PIPELINE = """\
import ssl
from flowbot import (Pipeline, Worker, Builder, Shell, AnyBranchScheduler, ForceScheduler,
                     HttpStatusPush, GitHubStatusPush, MailNotifier)

pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[AnyBranchScheduler("on-change", builders=["pass", "fail"]),
                ForceScheduler("force", builders=["pass", "fail"])],
    builders=[
        Builder("pass", collapse_requests=False, workers=["w1"], steps=[Shell("echo fine", name="test")]),
        Builder("fail", collapse_requests=False, workers=["w1"], steps=[
            Shell("echo compiling; echo 'error: widget.c:3: it broke' >&2; exit 1", name="compile"),
        ]),
    ],
    reporters=[{reporters}],
    url="https://ci.example.com/",
)
"""


def change(master, revision="abc123", repository="https://github.com/octo/widgets.git"):
    master.client.sendchange(branch="main", revision=revision, author="alice", repository=repository)


def test_http_push_reports_starts_and_ends_and_retries_a_failing_endpoint(
    master_factory, worker_factory, http_recorder
):
    # Given an endpoint that fails twice before it accepts anything
    endpoint = http_recorder([500, 503])
    master = master_factory(PIPELINE.format(reporters=f"HttpStatusPush({endpoint.url + '/hook'!r}, backoff=0.05)"))
    worker_factory(master, "w1", "s")

    # When a change builds both builders
    change(master)
    builds = finished_builds(master.client, 2)

    # Then every start and end arrives, the failed POSTs having been tried again
    delivered = wait_for(lambda: len(endpoint.answered()) == 4 and endpoint.answered(), 20, "4 reports")
    assert [r["status"] for r in endpoint.requests[:2]] == [500, 503]
    assert all(r["path"] == "/hook" and r["headers"]["Content-Type"] == "application/json" for r in delivered)
    events = sorted((r["json"]["build"]["builder"], r["json"]["event"]) for r in delivered)
    assert events == [("fail", "finished"), ("fail", "started"), ("pass", "finished"), ("pass", "started")]
    ends = [r["json"]["build"] for r in delivered if r["json"]["event"] == "finished"]
    finished = {build["builder"]: build for build in ends}
    assert finished["fail"]["result"] == "FAILURE" and finished["pass"]["result"] == "SUCCESS"
    assert finished["pass"]["revision"] == "abc123"
    assert finished["pass"]["url"] == f"https://ci.example.com/#/builds/{finished['pass']['id']}"
    assert {b["id"] for b in builds} == {b["id"] for b in finished.values()}
    assert "retrying in" in master.log()


def test_a_hanging_endpoint_never_delays_builds(master_factory, worker_factory, http_recorder):
    # Given an endpoint that takes 20 s to answer anything
    endpoint = http_recorder()
    endpoint.hang = 20
    master = master_factory(PIPELINE.format(reporters=f"HttpStatusPush({endpoint.url!r}, timeout=60)"))
    worker_factory(master, "w1", "s")

    # When three changes arrive, the six builds still run one after another at full speed
    started = time.monotonic()
    for n in range(3):
        change(master, revision=f"r{n}")
    finished_builds(master.client, 6, timeout=15)
    assert time.monotonic() - started < 15
    assert len(endpoint.requests) == 0  # the first report is still waiting for its answer


def test_github_status_push_marks_commits_pending_then_with_the_result(master_factory, worker_factory, http_recorder):
    # Given a GitHub Enterprise stand-in, and a reporter for the "fail" builder only
    github = http_recorder()
    reporter = f"GitHubStatusPush('ghp-not-for-logs', base_url={github.url + '/api/v3/'!r}, builders=['fail'])"
    master = master_factory(PIPELINE.format(reporters=reporter))
    worker_factory(master, "w1", "s")

    change(master, revision="0123abcd")
    builds = {b["builder"]: b for b in finished_builds(master.client, 2)}

    statuses = wait_for(lambda: len(github.requests) == 2 and github.requests, 20, "two statuses")
    assert [r["path"] for r in statuses] == ["/api/v3/repos/octo/widgets/statuses/0123abcd"] * 2
    assert [r["json"]["state"] for r in statuses] == ["pending", "failure"]
    for request in statuses:
        assert request["headers"]["Authorization"] == "Bearer ghp-not-for-logs"
        assert request["headers"]["Accept"] == "application/vnd.github+json"
        assert request["json"]["context"] == "flowbot/fail"
        assert request["json"]["target_url"] == f"https://ci.example.com/#/builds/{builds['fail']['id']}"
    assert "FAILURE" in statuses[1]["json"]["description"]
    assert "ghp-not-for-logs" not in master.log()


def test_a_mode_other_than_all_never_leaves_a_commit_pending(master_factory, worker_factory, http_recorder):
    # Given GitHub statuses and an HTTP push that report failing builds only
    github, hook = http_recorder(), http_recorder()
    reporters = (
        f"GitHubStatusPush('ghp', base_url={github.url!r}, mode='failing'),HttpStatusPush({hook.url!r}, mode='failing')"
    )
    master = master_factory(PIPELINE.format(reporters=reporters))
    worker_factory(master, "w1", "s")

    # When two changes build each builder: pass, fail, pass, fail
    change(master, revision="c0ffee0")
    finished_builds(master.client, 2)
    change(master, revision="c0ffee1")
    finished_builds(master.client, 4)

    # Then only the failing builds were reported, each with its end: no commit is left pending
    wait_for(lambda: len(github.requests) >= 2 and len(hook.requests) >= 2, 20, "the failures")
    time.sleep(1)
    last = {(r["path"], r["json"]["context"]): r["json"]["state"] for r in github.requests}
    assert last == {
        ("/repos/octo/widgets/statuses/c0ffee0", "flowbot/fail"): "failure",
        ("/repos/octo/widgets/statuses/c0ffee1", "flowbot/fail"): "failure",
    }
    assert len(github.requests) == 2
    events = [(r["json"]["event"], r["json"]["build"]["builder"]) for r in hook.requests]
    assert events == [("finished", "fail"), ("finished", "fail")]


def test_github_refusing_a_status_is_logged_and_not_retried(master_factory, worker_factory, http_recorder):
    github = http_recorder([401])
    reporter = f"GitHubStatusPush('bad-token', base_url={github.url!r}, builders=['pass'], backoff=0.05)"
    master = master_factory(PIPELINE.format(reporters=reporter))
    worker_factory(master, "w1", "s")

    change(master, revision="feed")
    finished_builds(master.client, 2)

    # The refused pending status is not sent again; the final status still goes out
    wait_for(lambda: len(github.requests) == 2, 20, "the second status")
    assert [r["status"] for r in github.requests] == [401, 201]
    assert [r["json"]["state"] for r in github.requests] == ["pending", "success"]
    wait_for(lambda: "refused, not retrying" in master.log(), 10, "the refusal in the log")
    assert "Bad credentials" in master.log()


def test_reporter_credentials_can_be_the_pipelines_secrets(master_factory, worker_factory, http_recorder, tmp_path):
    # Given tokens kept in secret files rather than in the pipeline
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "github_token").write_text("ghp-from-a-file\n")
    (secrets / "hook_token").write_text("hook-from-a-file")
    github, hook = http_recorder(), http_recorder()
    (secrets / "hook_url").write_text(hook.url + "/T0K3N-in-the-url")
    reporters = (
        f"GitHubStatusPush(Interpolate('%(secret:github_token)s'), base_url={github.url!r}, builders=['pass']),"
        "HttpStatusPush(Interpolate('%(secret:hook_url)s'),"
        " headers={'Authorization': Interpolate('Bearer %(secret:hook_token)s')}, builders=['pass'])"
    )
    master = master_factory(with_secrets(PIPELINE.format(reporters=reporters), secrets))
    worker_factory(master, "w1", "s")

    # When a build runs
    change(master, revision="5ec2e7")
    finished_builds(master.client, 2)

    # Then each reporter sent the secret as its credential, and the master never showed it
    wait_for(lambda: len(github.requests) == 2 and len(hook.requests) == 2, 20, "two reports each")
    assert {r["headers"]["Authorization"] for r in github.requests} == {"Bearer ghp-from-a-file"}
    assert {r["headers"]["Authorization"] for r in hook.requests} == {"Bearer hook-from-a-file"}
    assert {r["path"] for r in hook.requests} == {"/T0K3N-in-the-url"}
    assert "from-a-file" not in master.log() and "T0K3N" not in master.log()


def with_secrets(pipeline: str, directory) -> str:
    """``pipeline`` with its secrets read from files in ``directory``."""
    return pipeline.replace("MailNotifier)", "MailNotifier, Interpolate, SecretsInDirectory)").replace(
        "    url=", f"    secrets=[SecretsInDirectory({str(directory)!r})],\n    url="
    )


# -- mail ----------------------------------------------------------------------------------------------


class Mailbox:
    """What an aiosmtpd server received, and how each client got in.

    ``refuse`` holds, by command ("RCPT", "DATA"), the replies that the server gives the next times
    that command comes, before it accepts it (a greylisting server's ``450``, say); ``refused`` what it gave.
    """

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.refuse: dict[str, list[str]] = {}
        self.refused: list[str] = []

    def _refusal(self, command: str) -> str | None:
        replies = self.refuse.get(command)
        if not replies:
            return None
        self.refused.append(replies[0])
        return replies.pop(0)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if refusal := self._refusal("RCPT"):
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if refusal := self._refusal("DATA"):
            return refusal
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "message": message_from_bytes(envelope.content, policy=default_policy),
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "login": session.authenticated and session.auth_data.login.decode(),
            }
        )
        return "250 OK"


#: The stand-in SMTP server (aiosmtpd, in a thread of the test process) may leave a closed session's
#: socket to the garbage collector, which then warns in whichever test runs: the master, a process of
#: its own, is not what leaks.
smtp_stand_in = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def smtp_factory(tmp_path):
    """Start SMTP servers on free ports with a certificate the CA in ``ca.pem`` signed, and a login
    (ci / mail-secret): with STARTTLS required, or (``implicit_tls``) TLS from the first byte."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    controllers = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"ci" and auth_data.password == b"mail-secret"
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def start(implicit_tls: bool = False) -> Mailbox:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        tls = {"ssl_context": context, "auth_require_tls": False} if implicit_tls else {"tls_context": context}
        mailbox = Mailbox()
        controller = Controller(
            mailbox,
            hostname="127.0.0.1",
            port=free_port(),
            require_starttls=not implicit_tls,
            auth_required=True,
            authenticator=authenticator,
            **tls,
        )
        controller.start()
        controllers.append(controller)
        mailbox.port = controller.port
        mailbox.ca_file = ca_file
        return mailbox

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_server(smtp_factory):
    """An SMTP server on a free port that requires STARTTLS and a login (ci / mail-secret)."""
    return smtp_factory()


def mailer(server: Mailbox, options: str) -> str:
    """A MailNotifier to dev@example.com through ``server``, logged in as ci, with more ``options``."""
    return (
        f"MailNotifier('ci@example.com', 'dev@example.com', smtp_port={server.port}, username='ci',"
        f" password='mail-secret', ssl_context=ssl.create_default_context(cafile={str(server.ca_file)!r}),"
        f" {options})"
    )


@smtp_stand_in
def test_mail_notifier_sends_failing_builds_over_starttls_with_login(
    master_factory, worker_factory, smtp_server, tmp_path
):
    (tmp_path / "smtp_password").write_text("mail-secret")
    reporter = (
        f"MailNotifier('flowbot <ci@example.com>', ['dev@example.com'], smtp_host='localhost',"
        f" smtp_port={smtp_server.port}, username='ci', password=Interpolate('%(secret:smtp_password)s'),"
        f" mode='failing', ssl_context=ssl.create_default_context(cafile={str(smtp_server.ca_file)!r}))"
    )
    master = master_factory(with_secrets(PIPELINE.format(reporters=reporter), tmp_path))
    worker_factory(master, "w1", "s")

    change(master, revision="abc1234567890")
    builds = {b["builder"]: b for b in finished_builds(master.client, 2)}

    (mail,) = wait_for(lambda: smtp_server.messages, 20, "a mail")
    time.sleep(0.5)
    assert len(smtp_server.messages) == 1  # the passing build is not mailed in "failing" mode
    assert mail["tls"] and mail["login"] == "ci"
    assert mail["to"] == ["dev@example.com"]
    message = mail["message"]
    assert message["Subject"] == "FAILURE: fail #1 on main (abc1234567)"
    assert message["From"] == "flowbot <ci@example.com>"
    body = message.get_content()
    assert "Build fail #1 ended with FAILURE." in body
    assert f"https://ci.example.com/#/builds/{builds['fail']['id']}" in body
    assert "compile" in body and "Revision:  abc1234567890" in body
    assert 'The last 4 lines of the log of step "compile":' in body
    assert "    error: widget.c:3: it broke" in body
    assert "mail-secret" not in master.log()


@smtp_stand_in
def test_mail_to_a_server_that_refuses_the_login_is_given_up_and_logged(master_factory, worker_factory, smtp_server):
    reporter = (
        f"MailNotifier('ci@example.com', 'dev@example.com', smtp_port={smtp_server.port}, username='ci',"
        f" password='wrong', ssl_context=ssl.create_default_context(cafile={str(smtp_server.ca_file)!r}),"
        " builders=['fail'])"
    )
    master = master_factory(PIPELINE.format(reporters=reporter))
    worker_factory(master, "w1", "s")
    change(master)
    finished_builds(master.client, 2)
    wait_for(lambda: "refused the login of 'ci'" in master.log(), 20, "the refused login in the log")
    assert smtp_server.messages == []
    assert "wrong" not in master.log().replace("went wrong", "")


@smtp_stand_in
def test_a_branch_with_a_newline_is_mailed_on_one_subject_line(master_factory, worker_factory, smtp_server):
    # Given a change on a branch whose name carries a newline and a header after it
    reporter = mailer(smtp_server, "builders=['fail'], attempts=1")
    master = master_factory(PIPELINE.format(reporters=reporter))
    worker_factory(master, "w1", "s")
    master.client.sendchange(branch="main\r\nBcc: eve@example.com", revision="abc1234567890", author="alice")
    finished_builds(master.client, 2)

    # Then the mail goes out, the branch on the subject's one line and no header smuggled in
    (mail,) = wait_for(lambda: smtp_server.messages, 20, "a mail")
    message = mail["message"]
    assert message["Subject"] == "FAILURE: fail #1 on main Bcc: eve@example.com (abc1234567)"
    assert message["Bcc"] is None and mail["to"] == ["dev@example.com"]


# aiosmtpd knows TLS only as STARTTLS: it warns that its SMTPS server takes logins "without TLS"
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@smtp_stand_in
def test_mail_notifier_sends_over_tls_from_the_first_byte(master_factory, worker_factory, smtp_factory):
    # Given a mail server that speaks TLS only (port 465 style), with a certificate the notifier trusts
    smtps = smtp_factory(implicit_tls=True)
    reporter = mailer(smtps, "tls='ssl', builders=['fail'], attempts=1")
    master = master_factory(PIPELINE.format(reporters=reporter))
    worker_factory(master, "w1", "s")

    # When a build fails
    change(master, revision="abc1234567890")
    finished_builds(master.client, 2)

    # Then its mail went over TLS, after the login
    (mail,) = wait_for(lambda: smtps.messages, 20, "a mail")
    assert mail["tls"] and mail["login"] == "ci"
    assert mail["message"]["Subject"] == "FAILURE: fail #1 on main (abc1234567)"


@pytest.mark.parametrize(
    ("command", "reply"),
    [("RCPT", "450 4.2.0 Greylisted, try again later"), ("DATA", "451 4.3.0 Mail server busy, try again later")],
)
@smtp_stand_in
def test_mail_the_server_puts_off_with_a_temporary_failure_is_sent_again(
    master_factory, worker_factory, smtp_server, command, reply
):
    # Given a mail server that answers the first mail with a temporary failure
    smtp_server.refuse[command] = [reply]
    reporter = mailer(smtp_server, "builders=['fail'], backoff=0.05")
    master = master_factory(PIPELINE.format(reporters=reporter))
    worker_factory(master, "w1", "s")

    # When a build fails
    change(master)
    finished_builds(master.client, 2)

    # Then the mail is tried again, and arrives once
    (mail,) = wait_for(lambda: smtp_server.messages, 20, "the mail, sent again")
    assert smtp_server.refused == [reply]
    assert mail["message"]["Subject"].startswith("FAILURE: fail #1") and mail["to"] == ["dev@example.com"]
    assert "retrying in" in master.log()
    time.sleep(0.5)
    assert len(smtp_server.messages) == 1


@smtp_stand_in
def test_mail_to_a_recipient_the_server_refuses_for_good_is_not_sent_again(master_factory, worker_factory, smtp_server):
    smtp_server.refuse["RCPT"] = ["550 5.1.1 No such user"] * 2
    reporter = mailer(smtp_server, "builders=['fail'], backoff=0.05")
    master = master_factory(PIPELINE.format(reporters=reporter))
    worker_factory(master, "w1", "s")
    change(master)
    finished_builds(master.client, 2)
    wait_for(lambda: "refused, not retrying" in master.log(), 20, "the refusal in the log")
    time.sleep(0.5)
    assert smtp_server.refused == ["550 5.1.1 No such user"] and smtp_server.messages == []
