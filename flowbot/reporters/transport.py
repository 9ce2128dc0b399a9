"""Sending JSON for reporters, with tornado's asynchronous HTTP client.

Tornado is imported when the first report is sent, so a pipeline file that lists reporters loads
without it. Failures are sorted for the retry logic: network errors, timeouts, 5xx, 408 and 429 are
worth another try (:class:`~flowbot.errors.ReportError`), and so is a 403 that says a rate limit
was hit (GitHub's way: ``Retry-After``, or ``X-RateLimit-Remaining: 0``); any other 4xx means the
request itself is wrong and is not retried (:class:`~flowbot.errors.ReportRejected`).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ReportError, ReportRejected

#: Statuses below 500 that are still worth retrying: request timeout, rate limited.
_RETRYABLE = {408, 429}


async def send_json(
    url: str,
    payload: Any,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    shown: str | None = None,
) -> tuple[int, bytes]:
    """Send ``payload`` as JSON (POST, or PATCH...); returns the status and body of a 2xx answer.
    Errors name the URL, or ``shown`` instead when the URL is a secret.

    Raises:
        ReportError: no answer, or one worth retrying. ReportRejected: the endpoint refused it.
    """
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    request = HTTPRequest(
        url,
        method=method,
        body=json.dumps(payload),
        headers={"Content-Type": "application/json", "User-Agent": "flowbot", **(headers or {})},
        connect_timeout=min(timeout, 10.0),
        request_timeout=timeout,
    )
    where = f"{method} {shown or url}"
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except OSError as exc:  # DNS failures and refused connections, on some tornado versions
        raise ReportError(f"{where}: {exc}") from None
    limited = response.code == 403 and (
        "Retry-After" in response.headers or response.headers.get("X-RateLimit-Remaining") == "0"
    )
    if response.code == 599 or response.code >= 500 or response.code in _RETRYABLE or limited:
        reason = response.error or response.reason
        raise ReportError(f"{where}: {response.code} {reason}")
    if response.code >= 400:
        raise ReportRejected(f"{where}: {response.code} {_message(response.body)}")
    return response.code, response.body


def _message(body: bytes | None) -> str:
    """The useful part of an error answer (GitHub's ``message``, else the start of the text)."""
    if not body:
        return ""
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace")
