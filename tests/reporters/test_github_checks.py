"""GitHubChecks against a local stand-in for GitHub's API that checks what it is sent: the App's
JWT (its signature, with the public key), the check runs' fields, and the annotations.

Through a real master, with real builds of real pull requests, in ``tests/e2e/test_pull_requests.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

import flowbot
from flowbot import Builder, ConfigError, ForceScheduler, GitHubChecks, Interpolate, Pipeline, Shell, Worker
from flowbot.errors import ReportError, ReportRejected
from flowbot.junit import Outcome, TestCase
from flowbot.record_json import build_detail_json, build_json
from flowbot.records import Build, SourceStamp, StepRecord
from flowbot.results import Result

from ..hosting_api import HostingAPI
from ..support import wait_for_async

HEAD = "0123456789abcdef0123456789abcdef01234567"
APP = 1234
INSTALLATION = 99


@pytest.fixture(scope="module")
def app_key() -> tuple[str, bytes]:
    """A GitHub App's private key (PEM text) and its public key (PEM bytes)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return private, key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def github(app_key) -> Iterator[HostingAPI]:
    api = HostingAPI(app_id=APP, public_key=app_key[1], token="ghs-given")
    yield api
    api.close()


def failing(n: int, *, file: str = "tests/test_calc.py") -> TestCase:
    return TestCase(
        "unit", "tests.test_calc.AddTest", f"test_{n}", Outcome.FAILED, 0.1, f"AssertionError: {n} != 5", file, n + 1
    )


def build(result: Result | None, *, tests: tuple[TestCase, ...] = (), build_id: int = 7) -> Build:
    steps = (
        StepRecord(0, "git", Result.SUCCESS, 100.0, 100.5),
        StepRecord(1, "test", Result.FAILURE if tests else Result.SUCCESS, 100.5, 102.0),
    )
    return Build(
        id=build_id,
        builder="unit",
        number=3,
        worker="w1",
        started_at=100.0,
        finished_at=None if result is None else 102.0,
        result=result,
        branch="refs/pull/2/head",
        revision=HEAD,
        sourcestamps=(SourceStamp(repository="https://github.com/octo/widgets.git", revision=HEAD),),
        steps=steps if result is not None else (),
        log_step="test" if result is not None else None,
        log_tail="FAILED (failures=1)" if tests else "",
        failed_tests=tests,
        url=f"https://ci.example.com/#/builds/{build_id}",
    )


def app_reporter(private_key: str, api: HostingAPI, **options) -> GitHubChecks:
    return GitHubChecks(app_id=APP, private_key=private_key, installation_id=INSTALLATION, base_url=api.url, **options)


async def test_an_app_posts_a_check_run_in_progress_then_completed_with_its_tests(app_key, github):
    reporter = app_reporter(app_key[0], github)

    # When a build of a pull request's head starts, then fails with one failing test
    await reporter.build_started(build(None))
    await reporter.build_finished(build(Result.FAILURE, tests=(failing(8),)))

    # Then the App's JWT was exchanged once, and the check run went from in progress to completed
    assert github.refused == []
    exchange, start, end = github.requests
    assert (exchange["method"], exchange["path"]) == ("POST", f"/app/installations/{INSTALLATION}/access_tokens")
    claims = jwt.decode(exchange["headers"]["authorization"].split()[1], app_key[1], algorithms=["RS256"])
    assert claims["iss"] == str(APP) and claims["iat"] <= time.time() and claims["exp"] - claims["iat"] <= 600
    assert (start["method"], start["path"]) == ("POST", "/repos/octo/widgets/check-runs")
    assert start["json"]["status"] == "in_progress" and start["json"]["started_at"] == "1970-01-01T00:01:40Z"
    (run,) = github.check_runs.values()
    assert end == github.requests_to(f"/check-runs/{run.id}$", "PATCH")[0]
    assert run.fields["name"] == "flowbot/unit" and run.fields["head_sha"] == HEAD
    assert run.fields["external_id"] == "flowbot-build-7"
    assert run.fields["details_url"] == "https://ci.example.com/#/builds/7"
    assert (run.fields["status"], run.fields["conclusion"]) == ("completed", "failure")
    output = run.fields["output"]
    assert output["title"] == "FAILURE: 1 failing test"
    assert (
        "| ✅ | git | SUCCESS | 0.5 s |" in output["summary"] and "| ❌ | test | FAILURE | 1.5 s |" in output["summary"]
    )
    assert "- `tests.test_calc.AddTest.test_8` (tests/test_calc.py:9): AssertionError: 8 != 5" in output["summary"]
    assert "FAILED (failures=1)" in output["text"]
    assert run.annotations == [
        {
            "path": "tests/test_calc.py",
            "start_line": 9,
            "end_line": 9,
            "annotation_level": "failure",
            "title": "tests.test_calc.AddTest.test_8",
            "message": "AssertionError: 8 != 5",
        }
    ]


async def test_the_installation_token_is_kept_and_renewed_before_it_expires(app_key, github):
    # A token valid an hour serves many reports
    reporter = app_reporter(app_key[0], github)
    for n in range(3):
        await reporter.build_started(build(None, build_id=n))
        await reporter.build_finished(build(Result.SUCCESS, build_id=n))
    assert len(github.requests_to("access_tokens")) == 1

    # One about to expire (inside the margin) is renewed before the next report
    github.token_lifetime = 120
    reporter = app_reporter(app_key[0], github)
    await reporter.build_started(build(None, build_id=10))
    await reporter.build_finished(build(Result.SUCCESS, build_id=10))
    assert len(github.requests_to("access_tokens")) == 3
    used = [r["headers"]["authorization"] for r in github.requests_to("check-runs")[-2:]]
    assert used[0] != used[1] and github.refused == []


async def test_annotations_go_fifty_a_request_and_a_retried_report_sends_none_twice(app_key, github):
    # Given a build with 120 failing tests, and a server that fails the second annotation request
    reporter = app_reporter(app_key[0], github)
    tests = (*(failing(n) for n in range(120)), TestCase("", "", "nowhere", Outcome.ERROR, None, "boom"))
    await reporter.build_started(build(None))
    github.fail(0, 503)

    # When the report is tried again, as the master does
    with pytest.raises(ReportError, match="503"):
        await reporter.build_finished(build(Result.FAILURE, tests=tests))
    await reporter.build_finished(build(Result.FAILURE, tests=tests))

    # Then every test with a place was annotated once, in requests of 50 at most; the other is in the summary
    (run,) = github.check_runs.values()
    assert [a["title"] for a in run.annotations] == [f"tests.test_calc.AddTest.test_{n}" for n in range(120)]
    sizes = [len(r["json"]["output"]["annotations"]) for r in github.requests_to("check-runs/", "PATCH")]
    assert sizes == [50, 50, 50, 20]  # the failed one (50) was sent again, then the rest
    assert [r["status"] for r in github.requests_to("check-runs/", "PATCH")] == [200, 503, 200, 200]
    assert "`nowhere`: boom" in run.fields["output"]["summary"] and run.fields["output"]["title"] == (
        "FAILURE: 121 failing tests"
    )
    assert github.refused == []


@pytest.mark.parametrize(
    ("result", "conclusion"),
    [
        (Result.SUCCESS, "success"),
        (Result.WARNINGS, "neutral"),
        (Result.FAILURE, "failure"),
        (Result.SKIPPED, "skipped"),
        (Result.EXCEPTION, "failure"),
        (Result.CANCELLED, "cancelled"),
        (Result.RETRY, "neutral"),
    ],
)
async def test_conclusions_by_result_with_a_token(github, result, conclusion):
    reporter = GitHubChecks(Interpolate("%(secret:checks_token)s"), base_url=github.url, name="ci/{builder}")
    reporter.use_secrets({"checks_token": "ghs-given"}.__getitem__)
    # A build whose start was not reported (a master started since) gets its check run at its end
    await reporter.build_finished(build(result))
    (run,) = github.check_runs.values()
    assert (run.fields["name"], run.fields["status"], run.fields["conclusion"]) == ("ci/unit", "completed", conclusion)
    assert run.fields["started_at"] == "1970-01-01T00:01:40Z" and github.refused == []
    assert github.requests[0]["headers"]["authorization"] == "Bearer ghs-given"


async def test_refusals_are_not_retried_and_bad_credentials_are_caught_early(app_key, github):
    # A private key that cannot sign, and a JWT the server does not take, are refused for good
    with pytest.raises(ReportRejected, match="private_key cannot sign"):
        await app_reporter("not a key", github).build_started(build(None))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = other.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    with pytest.raises(ReportRejected, match="401 A JSON web token could not be decoded"):
        await app_reporter(stranger, github).build_started(build(None))
    # A rate limit is worth another try; credentials of neither kind, or both, fail checkconfig
    github.fail(403)
    with pytest.raises(ReportError, match="403") as caught:
        await GitHubChecks("ghs-given", base_url=github.url).build_started(build(None))
    assert not isinstance(caught.value, ReportRejected)
    with pytest.raises(ConfigError, match=r"test_github_checks.py:\d+: GitHubChecks needs token=, or app_id="):
        GitHubChecks()
    with pytest.raises(ConfigError, match="not both"):
        GitHubChecks("t", app_id=1, private_key="k", installation_id=2)
    with pytest.raises(ConfigError, match="needs token=, or app_id="):
        GitHubChecks(app_id=1, private_key="k")
    with pytest.raises(ConfigError, match="installation_id must be a number"):
        GitHubChecks(app_id=1, private_key="k", installation_id="octo")


async def test_a_build_that_failed_for_a_commands_time_concludes_timed_out(tmp_path, github):
    # Given an embedded master whose step waits longer than its timeout allows, with a real worker
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["unit"])],
        builders=[Builder("unit", workers=["w1"], steps=[Shell("sleep 30", timeout=0.5, name="hangs")])],
        reporters=[GitHubChecks("ghs-given", base_url=github.url, repository="octo/widgets")],
    )
    master = flowbot.Master(pipeline, basedir=tmp_path, http=None)
    await master.start()
    try:
        await master.start_local_workers()

        # When a build of a commit runs it
        await master.force("unit", revision=HEAD)
        await master.wait_idle(30)
        (stored,) = [build_json(b) for b in await master.store.builds.query()]
        step = (build_detail_json(await master.store.builds.get(stored["id"])))["steps"][0]
        completed = await wait_for_async(
            lambda: [r for r in github.check_runs.values() if r.fields.get("status") == "completed"],
            20,
            "the completed check run",
        )
    finally:
        await master.stop()

    # Then the step says it timed out, and the check run's conclusion is timed_out
    assert (stored["result"], step["summary"]) == ("FAILURE", "timed out: command produced no output for 0.5 s")
    (run,) = completed
    assert run.fields["conclusion"] == "timed_out"
    assert (
        "| ❌ | hangs | FAILURE (timed out: command produced no output for 0.5 s) |" in run.fields["output"]["summary"]
    )
