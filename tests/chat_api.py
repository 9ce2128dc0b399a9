"""A local HTTP server standing in for chat services, which checks what it is sent.

- ``POST /services/...`` plays a Slack incoming webhook: the body must be JSON with a ``text`` and
  at most 50 ``blocks`` of Block Kit's kinds; a section's text (``mrkdwn`` or ``plain_text``) takes
  at most 3000 characters, its ``fields`` at most 10 of 2000; anything else is 400
  ``invalid_blocks``, as Slack answers. A good message is answered ``ok`` (text, as Slack does).
- ``PUT /_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}`` plays a Matrix homeserver: the
  access token must be the one given (else 401 ``M_UNKNOWN_TOKEN``), the room one it knows, the
  content an ``m.text`` or ``m.notice`` with a ``body`` (and, with a ``format``, HTML in
  ``formatted_body``), else 400 ``M_BAD_JSON``. A transaction id it has seen gets the same event
  id back and posts nothing new, as the specification says.
- ``POST /webhook`` takes any JSON (a chat service that takes a template).

Every message accepted is in :attr:`ChatAPI.messages` as ``(service, content)``.
"""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any
from urllib.parse import unquote

BLOCKS = {"section", "context", "header", "divider", "actions", "image", "rich_text"}


class Invalid(Exception):
    """What the service would refuse, with its status and answer."""

    def __init__(self, status: int, answer: Any):
        self.status, self.answer = status, answer


class ChatAPI:
    def __init__(self, *, matrix_token: str = "matrix-token", room: str = "!builds:example.org"):
        self.matrix_token = matrix_token
        self.room = room
        self.messages: list[tuple[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.transactions: dict[str, str] = {}
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                api._handle(self, "POST")

            def do_PUT(self) -> None:
                api._handle(self, "PUT")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handle(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        self.requests.append({"method": method, "path": handler.path, "headers": dict(handler.headers), "body": body})
        try:
            if handler.headers.get("Content-Type", "").split(";")[0] != "application/json":
                raise Invalid(400, "invalid_payload")
            try:
                content = json.loads(body)
            except ValueError:
                raise Invalid(400, "invalid_payload") from None
            if method == "POST" and handler.path.startswith("/services/"):
                status, answer = self._slack(content)
            elif method == "PUT" and handler.path.startswith("/_matrix/client/v3/rooms/"):
                status, answer = self._matrix(handler, content)
            elif method == "POST" and handler.path == "/webhook":
                self.messages.append(("webhook", content))
                status, answer = 204, None
            else:
                raise Invalid(404, {"error": f"no {method} {handler.path}"})
        except Invalid as refused:
            status, answer = refused.status, refused.answer
        data = answer.encode() if isinstance(answer, str) else b"" if answer is None else json.dumps(answer).encode()
        handler.send_response(status)
        kind = "text/plain" if isinstance(answer, str) else "application/json"
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _slack(self, content: Any) -> tuple[int, Any]:
        if not isinstance(content, dict) or not isinstance(content.get("text"), str) or not content["text"]:
            raise Invalid(400, "no_text")
        blocks = content.get("blocks", [])
        if not isinstance(blocks, list) or len(blocks) > 50:
            raise Invalid(400, "invalid_blocks")
        for block in blocks:
            if not isinstance(block, dict) or block.get("type") not in BLOCKS:
                raise Invalid(400, "invalid_blocks")
            if block["type"] == "section":
                texts = [block["text"]] if "text" in block else []
                fields = block.get("fields", [])
                if (not texts and not fields) or len(fields) > 10:
                    raise Invalid(400, "invalid_blocks")
                for text, limit in [(t, 3000) for t in texts] + [(f, 2000) for f in fields]:
                    if text.get("type") not in ("mrkdwn", "plain_text") or not 0 < len(text.get("text", "")) <= limit:
                        raise Invalid(400, "invalid_blocks")
        self.messages.append(("slack", content))
        return 200, "ok"

    def _matrix(self, handler: http.server.BaseHTTPRequestHandler, content: Any) -> tuple[int, Any]:
        if handler.headers.get("Authorization") != f"Bearer {self.matrix_token}":
            raise Invalid(401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."})
        parts = handler.path.split("/")  # /_matrix/client/v3/rooms/{room}/send/{type}/{txn}
        if len(parts) != 9 or parts[6:8] != ["send", "m.room.message"]:
            raise Invalid(404, {"errcode": "M_UNRECOGNIZED"})
        room, transaction = unquote(parts[5]), parts[8]
        if room != self.room:
            raise Invalid(403, {"errcode": "M_FORBIDDEN", "error": f"not in room {room}"})
        if transaction in self.transactions:
            return 200, {"event_id": self.transactions[transaction]}
        if (
            not isinstance(content, dict)
            or content.get("msgtype") not in ("m.text", "m.notice")
            or not isinstance(content.get("body"), str)
            or ("format" in content and content["format"] != "org.matrix.custom.html")
            or ("format" in content and not isinstance(content.get("formatted_body"), str))
        ):
            raise Invalid(400, {"errcode": "M_BAD_JSON"})
        event = f"$event{len(self.transactions) + 1}"
        self.transactions[transaction] = event
        self.messages.append(("matrix", content))
        return 200, {"event_id": event}

    def sent(self, service: str) -> list[Any]:
        return [content for kind, content in self.messages if kind == service]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
