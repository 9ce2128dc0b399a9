"""The checks a single sign-on makes of what comes back: the ID token, and where the browser goes next."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from flowbot import ConfigError, OpenIDConnect, ProxyHeader
from flowbot.errors import Forbidden
from flowbot.web.oidc import Issuer, _local

ISSUER = "https://id.example.org"


@pytest.fixture
def issuer():
    """An issuer whose discovery document and keys are known (no network), and its signing key."""
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
    known = Issuer(OpenIDConnect(ISSUER, "flowbot", "secret"))
    known._metadata = {"issuer": ISSUER, "jwks_uri": "unused", "id_token_signing_alg_values_supported": ["RS256"]}
    known._keys = KeySet([RSAKey.import_key(key.as_dict(private=False))])
    known._keys_read = time.monotonic()
    return known, key


def token(key, **changes):
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "flowbot", "sub": "u1", "iat": now, "exp": now + 300, "nonce": "n1"}
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


async def test_a_good_id_token_gives_its_claims(issuer):
    known, key = issuer
    assert (await known.verify(token(key, email="a@example.org"), "n1"))["email"] == "a@example.org"


@pytest.mark.parametrize(
    "changes",
    [
        {"nonce": "replayed"},
        {"nonce": None},
        {"aud": "another-client"},
        {"iss": "https://evil.example.org"},
        {"exp": int(time.time()) - 3600},
    ],
    ids=["another nonce", "no nonce", "another audience", "another issuer", "expired"],
)
async def test_an_id_token_that_does_not_check_out_is_refused(issuer, changes):
    known, key = issuer
    with pytest.raises(Forbidden, match="the issuer's ID token does not check out"):
        await known.verify(token(key, **changes), "n1")


async def test_an_id_token_signed_by_another_key_is_refused(issuer):
    known, _ = issuer
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    known._keys_read = time.monotonic()  # no second look at the keys
    with pytest.raises(Forbidden):
        await known.verify(token(stranger), "n1")


def test_the_browser_goes_back_only_to_a_page_of_this_master():
    assert _local("/#/builds/3") == "/#/builds/3"
    for elsewhere in ("https://evil.example.org/", "//evil.example.org/", "/\\evil.example.org", "javascript:x"):
        assert _local(elsewhere) == "/"


def test_single_sign_on_misconfigured_fails_with_file_and_line():
    for make, problem in [
        (lambda: OpenIDConnect("http://id.example.org", "c", "s"), "issuer must be an https:// URL"),
        (lambda: OpenIDConnect("https://id.example.org", "", "s"), "needs the client_id"),
        (lambda: OpenIDConnect("https://id.example.org", "c", "s", client_auth="jwt"), "client_auth must be"),
        (lambda: ProxyHeader(trusted=[]), "ProxyHeader needs the proxy's addresses"),
        (lambda: ProxyHeader(trusted=["10.0.0.300"]), "'10.0.0.300' is no address or network"),
    ]:
        with pytest.raises(ConfigError) as caught:
            make()
        assert problem in str(caught.value) and caught.value.filename == __file__
    assert OpenIDConnect("http://127.0.0.1:8080/realms/ci", "c", "s").issuer == "http://127.0.0.1:8080/realms/ci"
    assert ProxyHeader(trusted=["10.0.0.0/8"]).trusts("10.1.2.3") and not ProxyHeader(trusted=["10.0.0.0/8"]).trusts(
        "127.0.0.1"
    )
