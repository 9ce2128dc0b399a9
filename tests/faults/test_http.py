"""Hostile input on the HTTP port: every endpoint the API lists of itself, called with path parts,
query arguments, bodies and headers of any kind, and requests that are not HTTP at all. The
master answers each without a server error (a 503 only while it says why), stays up and builds."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..support import SAMPLE_PIPELINE, finished_builds
from .messages import json_values

#: The README's first pipeline, with a JSON webhook.
HOOKED = SAMPLE_PIPELINE.replace("from flowbot import", "from flowbot import JsonHook,").replace(
    "pipeline = Pipeline(", "pipeline = Pipeline(sources=[JsonHook()],"
)

#: Examples of each fuzzer (FLOWBOT_FUZZ_EXAMPLES asks for more: benchmarks/README.md).
EXAMPLES = int(os.environ.get("FLOWBOT_FUZZ_EXAMPLES", 300))
FUZZING = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))

#: A master and workers start, then the examples run (each takes a few milliseconds, or a few tens).
pytestmark = pytest.mark.timeout(300 + EXAMPLES // 5)

#: What a path part may be: a real name or number, or anything.
parts = st.sampled_from(["unit", "lint", "w1", "1", "0", "-1", "99999999999999999999", "unit/1"]) | st.text(max_size=12)

#: The fields of a change and of a forced build, as the API documents them, with values of any kind.
change_fields = st.dictionaries(
    st.sampled_from(
        [
            "branch",
            "revision",
            "author",
            "who",
            "comments",
            "files",
            "properties",
            "repository",
            "project",
            "category",
            "codebase",
            "when",
            "reason",
            "revisions",
        ]
    )
    | st.text(max_size=8),
    json_values | st.text(alphabet=st.characters(categories=["Cs", "Lo", "Zs"]), max_size=8),
    max_size=6,
)

#: Header names and values of any kind (``http.client`` refuses what cannot be sent at all).
headers = st.dictionaries(
    st.sampled_from(
        [
            "Content-Type",
            "Content-Length",
            "Origin",
            "Host",
            "Cookie",
            "Authorization",
            "X-Forwarded-For",
            "Transfer-Encoding",
            "Accept",
            "X-Hub-Signature-256",
        ]
    )
    | st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,15}\Z"),
    st.from_regex(r"\A[\x21-\x7e][\x20-\x7e]{0,40}\Z"),
    max_size=4,
)


def _endpoints(client) -> list[tuple[str, str]]:
    """The API's own list of itself, as (method, path template); WebSocket ones left out."""
    listed = client.request("GET", "/api")["endpoints"]
    return [tuple(e.split(" ")[:2]) for e in listed if "WebSocket" not in e] + [("POST", "/hooks/{name}")]


def _fill(template: str, draw) -> str:
    path, _, query = template.partition("?")
    path = re.sub(r"\{[a-z]+\}", lambda _: _quote(draw(parts)), path)
    names = [q.split("=")[0] for q in query.split("&") if q]
    args = [f"{_quote(n)}={_quote(draw(st.text(max_size=10)))}" for n in names if draw(st.booleans())]
    return path + ("?" + "&".join(args) if args else "")


def _quote(text: str) -> str:
    import urllib.parse

    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


def test_every_endpoint_called_with_anything_answers_without_a_server_error(master_factory, worker_factory):
    # Given a master with its workers
    master = master_factory(HOOKED)
    worker_factory(master, "w1", "change-me")
    worker_factory(master, "w2", "other")
    endpoints = _endpoints(master.client)
    statuses: dict[int, int] = {}

    # When each endpoint is called with path parts, queries, bodies and headers of any kind
    @FUZZING
    @given(st.data())
    def call(data: st.DataObject) -> None:
        method, template = data.draw(st.sampled_from(endpoints))
        path = _fill(template, data.draw)
        body = data.draw(
            change_fields.map(lambda d: json.dumps(d).encode())
            | json_values.map(lambda v: json.dumps(v).encode())
            | st.binary(max_size=200)
        )
        sent = {"Content-Type": "application/json", **data.draw(headers)}
        sent.pop("Content-Length", None)  # http.client counts the body itself
        sent.pop("Transfer-Encoding", None)
        connection = http.client.HTTPConnection("127.0.0.1", master.http_port, timeout=30)
        try:
            connection.request(method, path, body=body if method == "POST" else None, headers=sent)
            answer = connection.getresponse()
            answer.read()
        finally:
            connection.close()
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        assert answer.status < 500, (method, path, body[:200], sent, answer.status)

    call()

    # Then nothing failed inside, and the master builds (once its workers, which anyone may pause or
    # shut down through a master without Auth, are back at work)
    assert "Traceback" not in master.log()
    assert sum(statuses.values()) == EXAMPLES
    assert {status // 100 for status in statuses} >= {2, 4}, statuses  # some were taken, some refused
    for name, secret in (("w1", "change-me"), ("w2", "other")):
        master.client.unpause_worker(name)
        if not any(w["name"] == name and w["connected"] for w in master.client.workers()):
            worker_factory(master, name, secret)
    master.client.force("unit")
    assert any(b["result"] == "SUCCESS" for b in finished_builds(master.client, 1, builder="unit", timeout=60))


def test_requests_that_are_not_http_get_no_server_error_and_harm_no_one(master_factory, worker_factory):
    master = master_factory()
    worker_factory(master, "w1", "change-me")

    # When connections send bytes that are not quite HTTP (or not at all), and read what comes back
    @settings(FUZZING, max_examples=EXAMPLES // 3)
    @given(
        st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"POST /api/changes HTTP/1.1\r\nContent-Length: 5\r\n"]),
        st.binary(max_size=300),
    )
    def knock(start: bytes, noise: bytes) -> None:
        with socket.create_connection(("127.0.0.1", master.http_port), timeout=10) as raw:
            raw.sendall(start + noise + b"\r\n\r\n")
            raw.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
        status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.") else b"000"
        assert not status.startswith(b"5"), answer[:300]

    knock()
    assert "Traceback" not in master.log()
    master.client.force("unit")
    assert finished_builds(master.client, 1, builder="unit", timeout=60)[0]["result"] == "SUCCESS"
