"""Access control: open reads, control actions for users and tokens, and no cross-site requests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import tornado.httpclient
import tornado.websocket

from flowbot.client import Client
from flowbot.defaults import HTTP_PORT, MASTER_URL, WORKER_ENDPOINT
from flowbot.errors import Forbidden, Unauthorized

from ..support import SAMPLE_PIPELINE, Process, finished_builds, wait_for

PROTECTED = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, AnyBranchScheduler, Auth
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["quick"]), AnyBranchScheduler("on-change", builders=["quick"])],
    builders=[Builder("quick", collapse_requests=False, workers=["w1"], steps=[Shell("echo hi", name="hello")])],
    auth=Auth(users={{"alice": "wonderland", "bob": Auth.hash_password("builder")}},
              tokens={{"release-bot": "tok-123"}}, read={read!r}),
)
"""


def call(master, method, path, body=None, headers=None):
    """One raw HTTP request; returns (status, decoded JSON or text, response headers)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(master.url + path, data=data, method=method, headers=headers or {})
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw, status, got = answer.read(), answer.status, answer.headers
    except urllib.error.HTTPError as error:
        with error:
            raw, status, got = error.read(), error.code, error.headers
    try:
        return status, json.loads(raw), got
    except ValueError:
        return status, raw.decode(), got


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def protected(master_factory, worker_factory):
    master = master_factory(PROTECTED.format(read="open"))
    worker_factory(master, "w1", "s")
    return master


def test_reads_are_open_and_control_needs_credentials(protected):
    # Reads need nothing
    assert call(protected, "GET", "/api/builders")[0] == 200

    # Control without credentials: 401, saying what to send
    for path in (
        "/api/builders/quick/force",
        "/api/changes",
        "/api/builds/1/stop",
        "/api/builds/1/rebuild",
        "/api/buildrequests/1/cancel",
        "/api/workers/w1/pause",
        "/api/workers/w1/shutdown",
    ):
        status, body, headers = call(protected, "POST", path, {})
        assert status == 401, path
        assert "needs credentials" in body["error"]
        assert headers["WWW-Authenticate"] == 'Bearer realm="flowbot"'

    # Wrong credentials: 403
    assert call(protected, "POST", "/api/builders/quick/force", {}, {"Authorization": "Bearer nope"})[0] == 403
    status, body, _ = call(protected, "POST", "/api/builders/quick/force", {}, basic("alice", "queen"))
    assert (status, body["error"]) == (403, "wrong user name or password")

    # A worker paused with a token says by whom
    status, body, _ = call(protected, "POST", "/api/workers/w1/pause", {}, {"Authorization": "Bearer tok-123"})
    assert (status, body["paused"], body["paused_reason"]) == (200, True, "by release-bot")
    assert call(protected, "POST", "/api/workers/w1/unpause", {}, {"Authorization": "Bearer tok-123"})[0] == 200

    # A token, a plain password and a hashed one all work; the build says who forced it
    assert call(protected, "POST", "/api/builders/quick/force", {}, {"Authorization": "Bearer tok-123"})[0] == 201
    assert (
        call(protected, "POST", "/api/builders/quick/force", {"owner": "mallory"}, basic("alice", "wonderland"))[0]
        == 201
    )
    assert call(protected, "POST", "/api/builders/quick/force", {}, basic("bob", "builder"))[0] == 201
    builds = finished_builds(protected.client, 3)
    reasons = [call(protected, "GET", f"/api/builds/{b['id']}")[1]["reason"] for b in builds]
    assert sorted(reasons) == ["forced (forced by alice)", "forced (forced by bob)", "forced (forced by release-bot)"]
    assert "tok-123" not in protected.log() and "wonderland" not in protected.log()


def test_cross_site_requests_are_refused_whatever_they_carry(protected):
    evil = {"Origin": "https://evil.example", **basic("alice", "wonderland")}
    status, body, _ = call(protected, "POST", "/api/builders/quick/force", {}, evil)
    assert (status, body["error"]) == (403, "cross-site request from https://evil.example refused")
    fetched = {"Sec-Fetch-Site": "cross-site", "Authorization": "Bearer tok-123"}
    assert call(protected, "POST", "/api/builders/quick/force", {}, fetched)[0] == 403
    assert call(protected, "POST", "/api/workers/w1/shutdown", {}, fetched)[0] == 403
    assert protected.client.workers()[0]["shutting_down"] is False
    # The master's own pages may
    own = {"Origin": protected.url, "Sec-Fetch-Site": "same-origin", "Authorization": "Bearer tok-123"}
    assert call(protected, "POST", "/api/builders/quick/force", {}, own)[0] == 201


def test_an_open_master_still_refuses_cross_site_requests(master_factory):
    master = master_factory()
    assert call(master, "POST", "/api/changes", {}, {"Origin": "http://localhost:3000"})[0] == 403
    assert call(master, "POST", "/api/changes", {})[0] == 201


def test_the_login_cookie_needs_its_anti_forgery_header(protected):
    # Given a session from the web page's login
    status, body, headers = call(protected, "POST", "/api/login", {"user": "alice", "password": "wonderland"})
    assert status == 200 and body["user"] == "alice"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    assert call(protected, "GET", "/api/whoami", headers={"Cookie": cookie})[1]["user"] == "alice"

    # The cookie alone does not do: a forged form could send it
    status, body, _ = call(protected, "POST", "/api/builders/quick/force", {}, {"Cookie": cookie})
    assert status == 403 and "X-Flowbot-CSRF" in body["error"]
    assert call(protected, "POST", "/api/workers/w1/pause", {}, {"Cookie": cookie})[0] == 403
    assert protected.client.workers()[0]["paused"] is False
    session = {"Cookie": cookie, "X-Flowbot-CSRF": body_csrf(protected, cookie)}
    assert call(protected, "POST", "/api/builders/quick/force", {}, session)[0] == 201

    # A wrong password gets a clear refusal; logging out forgets the session
    assert call(protected, "POST", "/api/login", {"user": "alice", "password": "no"})[0] == 403
    assert call(protected, "POST", "/api/login", {"name": "alice"})[0] == 400
    _, _, headers = call(protected, "POST", "/api/logout", {}, {"Cookie": cookie})
    assert 'flowbot_session=""' in headers["Set-Cookie"]


def body_csrf(master, cookie):
    return call(master, "GET", "/api/whoami", headers={"Cookie": cookie})[1]["csrf"]


def test_closed_reads_need_credentials_too(master_factory):
    master = master_factory(PROTECTED.format(read="users"), wait=False)
    client = Client(master.url, token="tok-123")
    wait_for(lambda: _answers(client), 30, "the master")
    assert call(master, "GET", "/api/builders")[0] == 401
    assert call(master, "GET", "/metrics")[0] == 401
    assert call(master, "GET", "/api/builders", headers={"Authorization": "Bearer tok-123"})[0] == 200
    assert call(master, "GET", "/")[0] == 200  # the page itself holds nothing; it asks for a login
    with pytest.raises(Unauthorized):
        Client(master.url, token="").builders()
    with pytest.raises(Forbidden):
        Client(master.url, token="wrong").builders()
    master.stop()


def _answers(client):
    try:
        client.builders()
    except Exception:
        return False
    return True


def test_a_reconfig_needs_the_credentials_control_needs(protected):
    # Given an edited pipeline that adds a builder
    more = 'Builder("more", workers=["w1"], steps=[Shell("true")]), '
    edited = PROTECTED.format(read="open").replace('builders=[Builder("quick"', f'builders=[{more}Builder("quick"')
    (protected.basedir / "pipeline.py").write_text(edited)

    # When someone asks the master to apply it without credentials, or with wrong ones, it refuses
    status, body, headers = call(protected, "POST", "/api/reconfig", {})
    assert status == 401 and "needs credentials" in body["error"]
    assert headers["WWW-Authenticate"] == 'Bearer realm="flowbot"'
    assert call(protected, "POST", "/api/reconfig", {}, {"Authorization": "Bearer nope"})[0] == 403
    assert [b["name"] for b in protected.client.builders()] == ["quick"]

    # And with a token it applies it
    status, body, _ = call(protected, "POST", "/api/reconfig", {}, {"Authorization": "Bearer tok-123"})
    assert (status, sorted(body["builders"])) == (200, ["more", "quick"])
    assert sorted(b["name"] for b in protected.client.builders()) == ["more", "quick"]


async def test_the_event_stream_of_a_master_with_closed_reads_needs_credentials(master_factory, worker_factory):
    # Given a master whose reads need a login or a token
    master = master_factory(PROTECTED.format(read="users"), wait=False)
    client = Client(master.url, token="tok-123")
    wait_for(lambda: _answers(client), 30, "the master")
    worker_factory(master, "w1", "s", wait=False)
    wait_for(lambda: client.workers()[0]["connected"], 20, "the worker to connect")
    url = master.url.replace("http://", "ws://") + "/api/events?types=build.finished"

    # When a client opens the event stream without credentials, or with a wrong token, it is refused
    for headers, status in (({}, 401), ({"Authorization": "Bearer nope"}, 403)):
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(url, headers=headers))
        assert refused.value.code == status

    # And with a token it gets the events
    request = tornado.httpclient.HTTPRequest(url, headers={"Authorization": "Bearer tok-123"})
    ws = await tornado.websocket.websocket_connect(request)
    try:
        assert json.loads(await ws.read_message())["type"] == "hello"
        client.force("quick")
        event = json.loads(await asyncio.wait_for(ws.read_message(), 20))
        assert (event["type"], event["build"]["builder"], event["build"]["result"]) == (
            "build.finished",
            "quick",
            "SUCCESS",
        )
    finally:
        ws.close()


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than loopback (from ``ip -4 addr``, or its host name)."""
    try:
        listed = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, timeout=10).stdout
    except FileNotFoundError:
        listed = ""
    addresses = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)", listed)
    with contextlib.suppress(OSError):
        addresses.append(socket.gethostbyname(socket.gethostname()))
    return next((a for a in addresses if not ipaddress.ip_address(a).is_loopback), None)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def test_a_master_started_without_addresses_listens_on_loopback_only(tmp_path):
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    # Given a master started with neither --http nor --zmq
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "pipeline.py").write_text(SAMPLE_PIPELINE)
    master = Process([sys.executable, "-m", "flowbot", "start", str(basedir)], tmp_path / "master.log")
    try:

        def up() -> bool:
            assert master.alive(), master.log()
            return _answers(Client(MASTER_URL, timeout=5))

        wait_for(up, 30, "the master on its default address")
        # Then its HTTP API and its worker endpoint answer on loopback, and not on the machine's other address
        for port in (HTTP_PORT, int(WORKER_ENDPOINT.rsplit(":", 1)[1])):
            assert reachable("127.0.0.1", port), port
            assert not reachable(address, port), f"port {port} is open on {address}"
    finally:
        master.stop()


def test_the_cli_forces_with_a_token_from_a_flag_or_the_environment(protected):
    def flowbot(*args, env=None):
        import os

        return subprocess.run(
            [sys.executable, "-m", "flowbot", *args, "--master", protected.url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )

    refused = flowbot("force", "quick")
    assert refused.returncode == 1 and "needs credentials" in refused.stderr and "--token" in refused.stderr
    assert flowbot("force", "quick", "--token", "tok-123").returncode == 0
    forced = flowbot("force", "quick", env={"FLOWBOT_TOKEN": "tok-123"})
    assert forced.returncode == 0 and "forced quick" in forced.stdout
    wrong = flowbot("force", "quick", "--token", "guess")
    assert wrong.returncode == 1 and "not valid" in wrong.stderr


def test_a_client_guessing_a_password_is_held_off_and_tokens_keep_working(protected):
    # Given a client that got alice's password wrong as often as it may
    for _ in range(5):
        assert call(protected, "POST", "/api/builders/quick/force", {}, basic("alice", "guess"))[0] == 403

    # Then it is told to wait, even with the right password, in any way it tries
    status, body, headers = call(protected, "POST", "/api/builders/quick/force", {}, basic("alice", "guess"))
    assert status == 429 and body["error"].startswith("too many wrong passwords for 'alice'")
    assert 0 < int(headers["Retry-After"]) <= 60
    assert call(protected, "POST", "/api/builders/quick/force", {}, basic("alice", "wonderland"))[0] == 429
    assert call(protected, "POST", "/api/login", {"user": "alice", "password": "wonderland"})[0] == 429

    # While other users and the API tokens still force builds
    assert call(protected, "POST", "/api/builders/quick/force", {}, basic("bob", "builder"))[0] == 201
    assert call(protected, "POST", "/api/builders/quick/force", {}, {"Authorization": "Bearer tok-123"})[0] == 201
    assert len(finished_builds(protected.client, 2)) == 2


MANY_USERS = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Auth
hashed = Auth.hash_password("right")
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["quick"])],
    builders=[Builder("quick", workers=["w1"], steps=[Shell("echo hi", name="hello")])],
    auth=Auth(users={f"user{n}": hashed for n in range(24)}, tokens={"ci": "tok"}),
)
"""


def test_wrong_passwords_are_checked_without_holding_up_other_requests(master_factory):
    # Given a master whose users' passwords are hashed (each check takes PBKDF2's time)
    master = master_factory(MANY_USERS)
    answered: dict[str, float] = {}

    def guess(n: int) -> int:
        status = call(master, "POST", "/api/builders/quick/force", {}, basic(f"user{n}", "wrong"))[0]
        answered[f"user{n}"] = time.monotonic()
        return status

    # When every user's password is guessed at once
    with ThreadPoolExecutor(24) as pool:
        guesses = [pool.submit(guess, n) for n in range(24)]
        wait_for(lambda: answered, 30, "the first guess to be answered")

        # Then a request that comes while the guesses are being checked is answered before most of them
        assert call(master, "GET", "/api/builders", headers={"Authorization": "Bearer tok"})[0] == 200
        read_at = time.monotonic()
        assert [g.result() for g in guesses] == [403] * 24
    assert sum(at > read_at for at in answered.values()) >= 12
