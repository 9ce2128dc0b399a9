"""The ``flowbot`` command's remote commands (``flowbot/cli/main.py``), against a real HTTP server."""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flowbot.client import Client

# flowbot.cli names its main function as the submodule is named
cli = importlib.import_module("flowbot.cli.main")

ANSWERS = {
    "/api/builds/7/approve": {"approved": True, "by": "alice"},
    "/api/builds/7/reject": {"approved": False, "by": "alice"},
    "/api/builds/7/stop": {},
    "/api/builds/7/rebuild": {"buildrequest_ids": [9]},
}


class Recorder(BaseHTTPRequestHandler):
    """Answers the calls in ANSWERS and records each with its Authorization header."""

    calls: list[tuple[str, str, str | None]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.calls.append((self.command, self.path, self.headers.get("Authorization")))
        body = json.dumps(ANSWERS.get(self.path, {})).encode()
        self.send_response(200 if self.path in ANSWERS else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def master() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    Recorder.calls = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        (["approve", "7", "--comment", "ok"], "/api/builds/7/approve"),
        (["reject", "7"], "/api/builds/7/reject"),
        (["stop-build", "7"], "/api/builds/7/stop"),
        (["rebuild", "7"], "/api/builds/7/rebuild"),
    ],
)
def test_a_remote_command_talks_to_the_master_through_one_client_with_its_token(
    master, monkeypatch, capsys, argv, path
) -> None:
    made: list[Client] = []

    class Counted(Client):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(cli, "Client", Counted)
    cli.main([*argv, "--master", master, "--token", "tok"])
    assert len(made) == 1
    assert Recorder.calls == [("POST", path, "Bearer tok")]
    assert capsys.readouterr().out.startswith(("approved build 7 as alice", "rejected", "stopping", "rebuilding"))
