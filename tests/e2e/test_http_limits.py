"""What the master's HTTP server holds a client to: the size of a request body."""

from __future__ import annotations

import json
import socket
import subprocess

from ..support import SAMPLE_PIPELINE
from .test_webhooks import post as post_to

#: The README's first pipeline, with a JSON webhook.
HOOKED = SAMPLE_PIPELINE.replace("from flowbot import", "from flowbot import JsonHook,").replace(
    "pipeline = Pipeline(", "pipeline = Pipeline(sources=[JsonHook()],"
)
MiB = 1024 * 1024


def post(master, path: str, body: bytes) -> tuple[int, dict]:
    return post_to(master.url + path, body, {"Content-Type": "application/json"})


def change(size: int) -> bytes:
    """A change whose JSON is ``size`` bytes long."""
    empty = json.dumps({"branch": "main", "comments": ""}).encode()
    return json.dumps({"branch": "main", "comments": "x" * (size - len(empty))}).encode()


def test_a_body_over_the_limit_gets_413_with_a_json_error_and_the_connection_goes_on(master_factory):
    # Given a master with the API's 1 MiB limit and a JSON webhook
    master = master_factory(HOOKED)

    # When a client sends the API a body over the limit, as most clients do (all of it, then reads)
    status, reply = post(master, "/api/changes", change(2 * MiB))

    # Then it hears 413 with the API's JSON error, not a reset connection
    assert (status, reply) == (
        413,
        {"error": f"the request body is {2 * MiB} bytes; this endpoint takes at most {MiB}"},
    )
    # ... and a client that asks first (curl sends "Expect: 100-continue") hears it without sending the body
    curl = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-H",
            "Content-Type: application/json",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "@-",
            f"{master.url}/api/changes",
        ],
        input=change(3 * MiB),
        capture_output=True,
        timeout=60,
    )
    answer, code = curl.stdout.decode().rsplit("\n", 1)
    assert (curl.returncode, code) == (0, "413"), curl.stderr
    assert json.loads(answer)["error"].startswith(f"the request body is {3 * MiB} bytes")

    # While bodies up to the limit are taken, and webhook deliveries may be as large as GitHub's (25 MB)
    assert post(master, "/api/changes", change(MiB))[0] == 201
    assert post(master, "/hooks/changes", change(24 * MiB))[0] == 200
    status, reply = post(master, "/hooks/changes", change(26 * MiB))
    assert status == 413 and reply["error"].endswith(f"this endpoint takes at most {25 * MiB}")
    assert len(master.client.request("GET", "/api/changes")["changes"]) == 2


def test_a_body_too_large_to_be_worth_reading_is_answered_at_once(master_factory):
    # Given a master, and a client that says it will send 1 GiB
    master = master_factory()
    with socket.create_connection(("127.0.0.1", master.http_port), timeout=10) as client:
        client.sendall(
            b"POST /api/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1073741824\r\n\r\n" + b"{" * 65536
        )
        # Then the answer comes without the master waiting for it all, and says why
        head = client.recv(65536).decode()
    assert head.startswith("HTTP/1.1 413 ")
    assert '"error":"the request body is 1073741824 bytes; this endpoint takes at most 1048576"' in head
