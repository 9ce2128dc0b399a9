"""Guessing credentials from many addresses: one user's password, or an API token.

Each guess comes from its own loopback address (127.0.0.2, 127.0.0.3, ...), as an attacker who
rotates addresses sends them, over real HTTP to a real master.
"""

from __future__ import annotations

import base64
import http.client
import json

import pytest

from .test_access import PROTECTED


def call(master, path: str, headers: dict[str, str], *, source: str = "127.0.0.1", body: dict | None = None):
    """POST ``path`` from the loopback address ``source``; returns (status, JSON body, headers)."""
    connection = http.client.HTTPConnection("127.0.0.1", master.http_port, timeout=10, source_address=(source, 0))
    try:
        data = json.dumps(body or {})
        connection.request("POST", path, data, {"Content-Type": "application/json", **headers})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read()), answer.headers
    finally:
        connection.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def force(master, headers: dict[str, str], source: str = "127.0.0.1"):
    return call(master, "/api/builders/quick/force", headers, source=source)


@pytest.fixture
def master(master_factory):
    return master_factory(PROTECTED.format(read="open"))


def test_guessing_one_users_password_from_many_addresses_is_held_off_but_not_where_she_logs_in(master):
    # Given alice, who logged in from her usual address before
    assert force(master, basic("alice", "wonderland"))[0] == 201

    # When someone guesses her password from twenty addresses, a guess or two from each
    answers = [force(master, basic("alice", f"guess{n}"), f"127.0.0.{2 + n // 2}")[:2] for n in range(40)]

    # Then after twenty wrong guesses, any address she never used is refused without its guess being
    # checked, the right password included, with how long to wait
    statuses = [status for status, _ in answers]
    assert statuses[:20] == [403] * 20 and statuses[20:] == [429] * 20, statuses
    assert answers[20][1]["error"].startswith("too many wrong passwords for 'alice' lately, from many addresses")
    status, _, headers = force(master, basic("alice", "wonderland"), "127.0.0.99")
    assert status == 429 and 0 < int(headers["Retry-After"]) <= 600
    status, _, _ = call(master, "/api/login", {}, source="127.0.0.99", body={"user": "alice", "password": "wonderland"})
    assert status == 429

    # While she still logs in from her usual address, and other users and tokens from anywhere
    assert force(master, basic("alice", "wonderland"))[0] == 201
    assert force(master, basic("bob", "builder"), "127.0.0.99")[0] == 201
    assert force(master, {"Authorization": "Bearer tok-123"}, "127.0.0.98")[0] == 201
    assert "tok-123" not in master.log() and "wonderland" not in master.log()


def test_guessing_api_tokens_is_held_off_per_address_and_from_many_addresses(master):
    # Given a CI machine that used its token before
    ci = {"Authorization": "Bearer tok-123"}
    assert force(master, ci, "127.0.1.1")[0] == 201

    # When one address guesses tokens, it is refused after five wrong ones, its guesses unchecked
    answers = [force(master, {"Authorization": f"Bearer guess-{n}"}, "127.0.0.2")[:2] for n in range(7)]
    assert [status for status, _ in answers] == [403] * 5 + [429] * 2
    assert answers[5][1]["error"].startswith("too many wrong API tokens from this address")
    assert force(master, ci, "127.0.0.2")[0] == 429

    # And when many addresses guess, two each, after twenty wrong tokens any address that never used
    # a token is refused, a right one included
    answers = [force(master, {"Authorization": f"Bearer other-{n}"}, f"127.0.0.{3 + n // 2}")[0] for n in range(30)]
    assert answers[:15] == [403] * 15 and answers[15:] == [429] * 15, answers
    assert force(master, ci, "127.0.0.200")[0] == 429

    # While the CI machine's token still works from where it is used, and passwords from anywhere
    assert force(master, ci, "127.0.1.1")[0] == 201
    assert force(master, basic("bob", "builder"), "127.0.0.200")[0] == 201
