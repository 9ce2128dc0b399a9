"""DNS rebinding: a page on a name its owner points at the master's address must get nothing from it.

A rebound page is same-origin with itself, so ``Origin`` and ``Host`` agree and every cross-site check
passes; only the ``Host`` header tells it apart. The master answers the names it is served under
(loopback names, IP addresses, the name it binds, ``Pipeline(url=...)`` and ``allowed_hosts``) and
refuses any other, for the API, the event stream, the web page and everything else it serves.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import tornado.httpclient
import tornado.websocket

from ..conftest import CHROMIUM, CHROMIUM_ARGS
from ..support import SAMPLE_PIPELINE

REBOUND = "rebound.example"

#: The README's first pipeline, with a JSON webhook.
OPEN = SAMPLE_PIPELINE.replace("from flowbot import", "from flowbot import JsonHook,").replace(
    "pipeline = Pipeline(", "pipeline = Pipeline(sources=[JsonHook()],"
)


def request(master, method, path, host, body=None):
    """One raw HTTP request to the master's socket with ``host`` as its Host (and Origin, as a page
    on that name sends); returns (status, body as JSON or text)."""
    origin = f"{host}:{master.http_port}"
    headers = {"Host": origin, "Origin": f"http://{origin}", "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    sent = urllib.request.Request(master.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:
            raw, status = answer.read(), answer.status
    except urllib.error.HTTPError as error:
        with error:
            raw, status = error.read(), error.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


async def events(master, host):
    """Open the event stream with ``host`` as Host; returns the first message."""
    origin = f"{host}:{master.http_port}"
    url = master.url.replace("http://", "ws://") + "/api/events"
    connect = tornado.httpclient.HTTPRequest(url, headers={"Host": origin, "Origin": f"http://{origin}"})
    ws = await tornado.websocket.websocket_connect(connect)
    try:
        return json.loads(await ws.read_message())
    finally:
        ws.close()


async def test_requests_for_another_name_are_refused_everywhere(master_factory):
    # Given an open master (no Auth), as one runs on a laptop
    master = master_factory(OPEN)

    # When a page on a rebound name asks it to force, reconfigure, take a change or read anything
    calls = [
        ("POST", "/api/builders/unit/force", {}),
        ("POST", "/api/reconfig", {}),
        ("POST", "/api/changes", {"branch": "main"}),
        ("POST", "/api/workers/w1/pause", {}),
        ("POST", "/api/login", {"user": "a", "password": "b"}),
        ("POST", "/hooks/changes", {}),
        ("GET", "/api/builders", None),
        ("GET", "/api/whoami", None),
        ("GET", "/api/no-such-thing", None),
        ("GET", "/", None),
        ("GET", "/static/app.js", None),
        ("GET", "/metrics", None),
        ("GET", "/badges/unit.svg", None),
    ]
    for method, path, body in calls:
        status, reply = request(master, method, path, REBOUND, body)

        # Then each is refused with a JSON error that names the Host and says how to allow it
        assert status == 403, (method, path, status, reply)
        assert reply["error"] == (
            f"this master is not served under the name {REBOUND!r} (the request's Host header); "
            "if it is, add the name to Pipeline(allowed_hosts=[...])"
        ), (method, path)
    # ... the event stream too, before any upgrade
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await events(master, REBOUND)
    assert refused.value.code == 403

    # And nothing was done: no request queued, no change taken, no worker paused
    assert master.client.request("GET", "/api/buildrequests")["buildrequests"] == []
    assert master.client.request("GET", "/api/changes")["changes"] == []
    assert not master.client.workers()[0]["paused"]
    assert "refused a request for host 'rebound.example'" in master.log()

    # While the names that are this machine are served: loopback names and addresses
    for host in ("127.0.0.1", "localhost", "LOCALHOST.", "app.localhost", "[::1]"):
        assert request(master, "GET", "/api/builders", host)[0] == 200, host
        assert (await events(master, host))["type"] == "hello", host
    assert request(master, "POST", "/api/builders/unit/force", "localhost", {})[0] == 201


async def test_the_names_a_master_is_served_under_are_configured_and_reconfigured(master_factory):
    # Given a master behind a proxy that keeps the Host header: its page's url names it, and so
    # does allowed_hosts for another name
    configured = SAMPLE_PIPELINE.replace(
        "pipeline = Pipeline(",
        'pipeline = Pipeline(url="https://ci.example.org/flowbot/", allowed_hosts=["build.internal"],',
    )
    master = master_factory(configured)

    # Then requests for those names are served, and for others refused
    for host in ("ci.example.org", "CI.Example.Org", "build.internal"):
        assert request(master, "GET", "/", host)[0] == 200, host
        assert request(master, "POST", "/api/builders/unit/force", host, {})[0] == 201, host
        assert (await events(master, host))["type"] == "hello", host
    assert request(master, "GET", "/api/builders", "example.org")[0] == 403
    assert request(master, "GET", "/api/builders", "evil.build.internal")[0] == 403

    # When the pipeline names another host and the master is reconfigured
    (master.basedir / "pipeline.py").write_text(
        SAMPLE_PIPELINE.replace("pipeline = Pipeline(", 'pipeline = Pipeline(allowed_hosts=["ci.new.example"],')
    )
    assert master.client.request("POST", "/api/reconfig", body={})["builders"]

    # Then the new name is served at once, and the names it no longer has are refused
    assert request(master, "GET", "/api/builders", "ci.new.example")[0] == 200
    assert request(master, "GET", "/api/builders", "build.internal")[0] == 403
    assert request(master, "GET", "/api/builders", "ci.example.org")[0] == 403


def test_a_bad_allowed_hosts_fails_checkconfig_with_its_line(tmp_path):
    import subprocess
    import sys

    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(SAMPLE_PIPELINE.replace("pipeline = Pipeline(", 'pipeline = Pipeline(allowed_hosts="ci.org",'))
    checked = subprocess.run(
        [sys.executable, "-m", "flowbot", "checkconfig", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode != 0
    assert "pipeline.py:3" in checked.stderr + checked.stdout
    assert "allowed_hosts must be a list of host names" in checked.stderr + checked.stdout


def test_a_page_on_a_name_rebound_to_the_master_cannot_force_read_or_listen(master_factory, worker_factory, browser):
    # Given an open master with a worker, and a browser in which rebound.example resolves to the
    # master's address (as it does once its owner's DNS answers 127.0.0.1 to a page it served)
    master = master_factory()
    worker_factory(master, "w1", "change-me")
    rebound = browser.browser_type.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"]
    )
    try:
        page = rebound.new_page()
        page.goto(f"http://{REBOUND}:{master.http_port}/")

        # When the page's script, same-origin with itself, forces a build, reads the builders and
        # opens the event stream
        outcome = page.evaluate(
            """async () => {
                const forced = await fetch("/api/builders/unit/force", {method: "POST", body: "{}",
                                            headers: {"Content-Type": "application/json"}});
                const read = await fetch("/api/builders");
                const opened = await new Promise(resolve => {
                    const ws = new WebSocket(`ws://${location.host}/api/events`);
                    ws.onopen = () => { ws.close(); resolve(true); };
                    ws.onerror = () => resolve(false);
                });
                return {forced: forced.status, read: read.status, body: await read.text(), opened};
            }"""
        )

        # Then the master refused all three, and built nothing
        assert (outcome["forced"], outcome["read"], outcome["opened"]) == (403, 403, False)
        assert "not served under the name 'rebound.example'" in json.loads(outcome["body"])["error"]
    finally:
        rebound.close()
    assert master.client.request("GET", "/api/buildrequests")["buildrequests"] == []
