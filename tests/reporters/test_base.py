"""Which finished builds a reporter reports, by builder and mode, and its credentials."""

from __future__ import annotations

import pytest

from flowbot import ConfigError, GitHubStatusPush, HttpStatusPush, Interpolate, MailNotifier, Reporter
from flowbot.errors import ReportError
from flowbot.properties import RenderError
from flowbot.records import Build
from flowbot.results import Result

S, W, F, E, R = Result.SUCCESS, Result.WARNINGS, Result.FAILURE, Result.EXCEPTION, Result.RETRY


def report(result: Result, previous: Result | None = None, builder: str = "unit") -> Build:
    return Build(
        id=1,
        builder=builder,
        number=1,
        worker="w",
        started_at=0.0,
        finished_at=1.0,
        result=result,
        previous_result=previous,
    )


@pytest.mark.parametrize(
    ("mode", "result", "previous", "reported"),
    [
        ("all", S, S, True),
        ("failing", F, S, True),
        ("failing", E, S, False),
        ("failing", S, F, False),
        ("passing", S, S, True),
        ("warnings", W, S, True),
        ("warnings", F, S, False),
        ("exception", E, None, True),
        ("problem", F, S, True),
        ("problem", S, F, True),
        ("problem", F, F, False),
        ("problem", S, None, False),  # a first build that passes is no news
        ("problem", F, None, True),
        ("problem", R, S, False),  # a retry says nothing about the code
        (("failing", "warnings"), W, S, True),
        (("failing", "warnings"), S, S, False),
    ],
)
def test_modes_choose_finished_builds(mode, result, previous, reported):
    assert Reporter(mode=mode).wants(report(result, previous)) is reported


def test_the_builder_filter():
    reporter = Reporter(builders=["unit"])
    assert reporter.reports_on("unit") and not reporter.reports_on("lint")
    assert Reporter().reports_on("anything")
    assert Reporter(builders="unit").builders == ["unit"]


def test_an_unknown_mode_names_the_line_that_asked_for_it():
    with pytest.raises(ConfigError, match=r"test_base.py:\d+: reporter mode must be among .* not \['flaky'\]"):
        Reporter(mode="flaky")


async def test_every_hook_is_a_no_op():
    reporter = Reporter()
    assert await reporter.build_started(report(S)) is None
    assert await reporter.build_finished(report(S)) is None
    assert await reporter.close() is None


def test_credentials_are_strings_or_secrets_resolved_when_a_report_goes_out():
    reporter = GitHubStatusPush(Interpolate("%(secret:github_token)s"))
    with pytest.raises(RenderError, match="no secret named 'github_token'"):
        reporter.render(reporter._auth.token)
    secrets = {"github_token": "ghp-1"}
    reporter.use_secrets(secrets.__getitem__)
    assert reporter.render(reporter._auth.token) == "ghp-1"
    secrets["github_token"] = "ghp-2"  # a rotated secret is read again for the next report
    assert reporter.render(reporter._auth.token) == "ghp-2"


def test_a_credential_of_another_kind_names_the_line():
    with pytest.raises(ConfigError, match=r"test_base.py:\d+: GitHubStatusPush token must be a string or a secret"):
        GitHubStatusPush(12345)
    with pytest.raises(ConfigError, match="header Authorization must be a string or a secret"):
        HttpStatusPush("http://example.com", headers={"Authorization": b"bytes"})
    with pytest.raises(ConfigError, match="MailNotifier password must be"):
        MailNotifier("ci@example.com", "dev@example.com", password=["a list"])


async def test_a_secret_url_is_used_but_never_shown():
    # Given a push to a URL that carries a token, kept as a secret
    reporter = HttpStatusPush(Interpolate("%(secret:hook_url)s"), attempts=1)
    reporter.use_secrets({"hook_url": "http://127.0.0.1:9/hooks/T0K3N"}.__getitem__)
    assert "T0K3N" not in reporter.name

    # When the endpoint cannot be reached
    with pytest.raises(ReportError) as failed:
        await reporter.build_finished(report(S))

    # Then the error says where without the secret
    assert "POST the secret URL" in str(failed.value) and "T0K3N" not in str(failed.value)


@pytest.mark.parametrize(
    ("reporter", "starts"),
    [
        (GitHubStatusPush("t"), True),
        (GitHubStatusPush("t", mode="failing"), False),  # a start whose end may never come
        (GitHubStatusPush("t", mode=("all", "failing")), True),
        (HttpStatusPush("http://example.com", mode="problem"), False),
        (HttpStatusPush("http://example.com", started=False), False),
    ],
)
def test_starts_are_reported_only_where_every_end_is(reporter, starts):
    assert reporter.reports_starts is starts
