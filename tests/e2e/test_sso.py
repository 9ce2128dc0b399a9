"""Single sign-on through a real OpenID provider (oidc-provider, from the npm registry), in Chromium:
the page sends people to the issuer and back, logged in with their groups, which roles then judge."""

from __future__ import annotations

import http.client
import urllib.parse

import pytest

from ..support import finished_builds, free_port
from .test_access import call
from .test_web import expect, page  # noqa: F401 (fixtures)

PIPELINE = """\
from flowbot import (Pipeline, Worker, Builder, Shell, ForceScheduler, Auth, Role, OpenIDConnect, Interpolate,
                     SecretsInDirectory)
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["unit", "release"])],
    builders=[
        Builder("unit", workers=["w1"], steps=[Shell("echo tested", name="test")]),
        Builder("release", workers=["w1"], steps=[Shell("echo released", name="ship")]),
    ],
    secrets=[SecretsInDirectory({secrets!r})],
    auth=Auth(
        oidc=OpenIDConnect({issuer!r}, "flowbot", Interpolate("%(secret:oidc)s"), name="Test ID",
                           user_claim="preferred_username", scopes=["profile", "groups"]),
        roles=[Role("admins", groups=["ci-admins"], may=["force", "stop"]),
               Role("developers", groups=["dev"], may=["force"], builders=["unit"])],
    ),
    url="http://127.0.0.1:{port}",
)
"""


@pytest.fixture
def sso(oidc_provider, master_factory, worker_factory, tmp_path):
    """A master whose people log in through the provider: alice (ci-admins), bob (dev)."""

    def start(secret: str = "client-secret"):
        port = free_port()
        provider = oidc_provider(
            redirect_uris=[f"http://127.0.0.1:{port}/auth/oidc/callback"],
            accounts={"alice": {"groups": ["ci-admins"]}, "bob": {"groups": ["dev"]}},
        )
        secrets = tmp_path / "secrets"
        secrets.mkdir(exist_ok=True)
        (secrets / "oidc").write_text(secret)
        pipeline = PIPELINE.format(issuer=provider.issuer, port=port, secrets=str(secrets))
        master = master_factory(pipeline, http_port=port)
        worker_factory(master, "w1", "s")
        return master, provider

    return start


def log_in(tab, master, user):
    """Log in on the master's page through the provider's login pages, as ``user``."""
    tab.goto(f"{master.url}/#/builders/unit")
    tab.get_by_role("button", name="Log in").click()
    tab.get_by_role("link", name="Log in with Test ID").click()
    tab.locator("input[name=login]").fill(user)
    tab.locator("input[name=password]").fill("any password")
    tab.get_by_role("button", name="Sign-in").click()
    tab.get_by_role("button", name="Continue").click()  # the provider's consent page


def force_from_the_page(tab, builder):
    """Force ``builder`` as the page does (with the session's anti-forgery token); the answer's status."""
    return tab.evaluate(
        """async (builder) => {
            const me = await (await fetch("/api/whoami")).json();
            const answer = await fetch(`/api/builders/${builder}/force`, {method: "POST",
                headers: {"Content-Type": "application/json", "X-Flowbot-CSRF": me.csrf}, body: "{}"});
            return [answer.status, (await answer.json())];
        }""",
        builder,
    )


def test_people_log_in_through_the_issuer_and_their_groups_choose_what_they_may_do(sso, page, expect):  # noqa: F811
    master, provider = sso()

    # When alice logs in through the issuer from a builder's page
    log_in(page, master, "alice")

    # Then she is back on the master's page, logged in as the issuer named her
    expect(page.locator("#user")).to_contain_text("alice")
    assert page.url.startswith(master.url + "/")
    assert [e["event"] for e in provider.events() if e["event"].startswith("grant")] == ["grant.success"]
    # And her group (ci-admins) lets her force release
    status, answer = force_from_the_page(page, "release")
    assert status == 201, answer
    assert finished_builds(master.client, 1)[0]["builder"] == "release"

    # When bob (group dev) logs in in another browser
    other = page.context.browser.new_context()
    try:
        bobs = other.new_page()
        log_in(bobs, master, "bob")
        expect(bobs.locator("#user")).to_contain_text("bob")
        # Then he may force unit but not release
        assert force_from_the_page(bobs, "unit")[0] == 201
        status, answer = force_from_the_page(bobs, "release")
        assert status == 403 and answer["error"].startswith("bob may not force builds of 'release'")
    finally:
        other.close()

    # And logging out forgets the session
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def test_a_wrong_client_secret_logs_nobody_in(sso, page, expect):  # noqa: F811
    master, provider = sso(secret="not-the-secret")
    log_in(page, master, "alice")

    # The issuer refuses the code (it checks the client's credentials), and the master says so
    expect(page.locator("body")).to_contain_text("the issuer refused (401)")
    assert "invalid_client" in [e.get("error") for e in provider.events()]
    assert call(master, "GET", "/api/whoami")[1]["user"] is None


def test_a_callback_that_no_login_began_is_refused(sso):
    master, provider = sso()
    status, answer, _ = call(master, "GET", "/auth/oidc/callback?code=stolen&state=guessed")
    assert status == 400 and "log in again" in answer["error"]
    # And the start of a login sends the browser to the issuer with PKCE (S256), a state and a nonce
    connection = http.client.HTTPConnection("127.0.0.1", master.http_port, timeout=10)
    connection.request("GET", "/auth/oidc/login?next=/%23/builds/1")
    answer = connection.getresponse()
    connection.close()
    location = urllib.parse.urlsplit(answer.headers["Location"])
    asked = dict(urllib.parse.parse_qsl(location.query))
    assert answer.status == 302 and f"{location.scheme}://{location.netloc}" == provider.issuer
    assert asked["response_type"] == "code" and asked["client_id"] == "flowbot"
    assert asked["redirect_uri"] == f"{master.url}/auth/oidc/callback"
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert len(asked["state"]) >= 32 and len(asked["nonce"]) >= 32 and asked["scope"] == "openid profile groups"
    cookie = answer.headers["Set-Cookie"]
    assert "flowbot_oidc=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/auth/oidc/" in cookie
