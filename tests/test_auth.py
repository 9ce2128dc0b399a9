"""Auth: users with plain or hashed passwords, API tokens, and secrets that never show."""

from __future__ import annotations

import pytest

import flowbot.auth
from flowbot import Auth, ConfigError, Pipeline


async def test_passwords_plain_and_hashed_and_tokens_by_name():
    auth = Auth(
        users={"alice": "wonderland", "bob": Auth.hash_password("builder", iterations=1000)},
        tokens={"release-bot": "tok-1"},
    )
    assert await auth.check_password("alice", "wonderland") and not await auth.check_password("alice", "Wonderland")
    assert await auth.check_password("bob", "builder") and not await auth.check_password("bob", "builde")
    assert not await auth.check_password("carol", "anything")
    assert auth.token_owner("tok-1") == "release-bot" and auth.token_owner("tok-2") is None
    assert Auth(tokens=["a", "b"]).token_owner("b") == "token 2"
    assert auth.users == ["alice", "bob"]


async def test_an_unknown_user_costs_a_hash_check_as_a_known_one_does(monkeypatch):
    # Given users whose passwords are stored hashed
    auth = Auth(users={"bob": Auth.hash_password("builder", iterations=1000)})
    checked = []
    real = flowbot.auth._verify_hash
    monkeypatch.setattr(flowbot.auth, "_verify_hash", lambda stored, pw: checked.append(stored) or real(stored, pw))

    # When someone tries a name that does not exist, even with bob's password
    refused = await auth.check_password("mallory", "builder")

    # Then it is refused only after a full hash check, so the time taken does not tell names apart
    assert not refused and len(checked) == 1 and checked[0].startswith("pbkdf2_sha256$1000$")


async def test_a_password_of_any_text_is_refused_without_error():
    # Given users with a plain and a hashed password, one of them not ASCII
    auth = Auth(users={"alice": "wonderland", "zoë": Auth.hash_password("pässwörd", iterations=1000)})
    plain = Auth(users={"alice": "wonderland"})  # (no hashed password to check unknown users against)

    # Then any text, not ASCII or not even UTF-8 (a lone surrogate from JSON), is checked and refused
    for checker in (auth, plain):
        for user in ("alice", "zoë", "mallory"):
            for password in ("Ý", "wönderland", "\ud800", "pässwörd\udc80"):
                assert not await checker.check_password(user, password), (user, password)
    # And a password that is not ASCII is right when it is
    assert await auth.check_password("zoë", "pässwörd")


def test_secrets_never_show_in_repr():
    auth = Auth(users={"alice": "wonderland"}, tokens=["tok-secret"])
    assert repr(auth) == "Auth(users=['alice'], tokens=1, read='open')"


def test_mistakes_are_reported_with_the_line():
    with pytest.raises(ConfigError, match=r"test_auth.py:\d+: read must be 'open' or 'users'"):
        Auth(read="everyone")
    with pytest.raises(ConfigError, match="every token needs a non-empty name and secret"):
        Auth(tokens=[""])
    with pytest.raises(ConfigError, match="auth must be an Auth object"):
        Pipeline(auth={"alice": "x"})
    with pytest.raises(ConfigError, match="url must be an http"):
        Pipeline(url="ci.example.com")
