"""Logging in through an OpenID Connect issuer (``Auth(oidc=OpenIDConnect(...))``).

``GET /auth/oidc/login?next=/#/builds/3`` sends the browser to the issuer's authorization endpoint
with an Authorization Code request: a fresh ``state``, ``nonce`` and PKCE verifier (S256) are kept
in a signed, HTTP-only cookie for ten minutes (``SameSite=Lax``, so that it comes back with the
issuer's redirect, and only to ``/auth/oidc/``). ``GET /auth/oidc/callback`` checks the state, trades
the code (with the verifier and the client's secret) for tokens, and checks the ID token with
Authlib and joserfc: its signature against the issuer's published keys, its issuer, audience,
expiry and nonce. The user it names (from the ID token, or the issuer's userinfo for the same
subject when the token leaves the name or groups out) gets the web page's session cookie, with
the groups it lists, and the browser goes back to ``next`` (a path on this master, nothing else).

The issuer's discovery document is read once; its keys again when a token names one not yet seen.
Every call to the issuer goes through tornado's asynchronous client, off the build path.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from authlib.common.security import generate_token
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .. import secrets
from ..defaults import OIDC_LOGIN_SECONDS, OIDC_TIMEOUT
from ..errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from ..properties import render
from ..reporters.base import SecretsOnly
from .api import ApiHandler
from .session import OIDC_LOGIN, start_session

if TYPE_CHECKING:
    from ..sso import OpenIDConnect
    from .services import WebServices

log = logging.getLogger(__name__)

PENDING_COOKIE = "flowbot_oidc"
CALLBACK = "/auth/oidc/callback"


class Issuer:
    """What the master knows of an issuer: its discovery document and its keys, fetched when needed."""

    def __init__(self, oidc: OpenIDConnect):
        self.oidc = oidc
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_read = 0.0

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            found = await _get_json(f"{self.oidc.issuer}/.well-known/openid-configuration")
            if found.get("issuer", "").rstrip("/") != self.oidc.issuer:
                raise Unauthorized(f"the issuer's discovery document names another issuer: {found.get('issuer')!r}")
            missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not found.get(k)]
            if missing:
                raise Unauthorized(f"the issuer's discovery document has no {', '.join(missing)}")
            self._metadata = found
        return self._metadata

    async def keys(self, *, again: bool = False) -> KeySet:
        """The issuer's signing keys; ``again``: read them anew (at most once a minute)."""
        if self._keys is None or (again and time.monotonic() - self._keys_read > 60):
            self._keys = KeySet.import_key_set(await _get_json((await self.metadata())["jwks_uri"]))
            self._keys_read = time.monotonic()
        return self._keys

    async def userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        """The claims the issuer's userinfo endpoint gives (many issuers keep names and groups there,
        out of the ID token); none when it has no such endpoint.

        Raises:
            Forbidden: they are another subject's.
        """
        endpoint = (await self.metadata()).get("userinfo_endpoint")
        if not endpoint:
            return {}
        found = await _get_json(endpoint, {"Authorization": f"Bearer {access_token}"})
        if found.get("sub") != subject:
            raise Forbidden("the issuer's userinfo is another subject's than its ID token")
        return found

    async def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The claims of ``id_token`` once its signature, issuer, audience, times and nonce check out.

        Raises:
            Forbidden: they do not.
        """
        metadata = await self.metadata()
        algorithms = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in algorithms if a != "none"]
        try:
            try:
                token = jwt.decode(id_token, await self.keys(), algorithms=algorithms)
            except JoseError:
                token = jwt.decode(id_token, await self.keys(again=True), algorithms=algorithms)  # keys rotated?
            claims = CodeIDToken(
                token.claims,
                token.header,
                options={
                    "iss": {"essential": True, "value": metadata["issuer"]},
                    "aud": {"essential": True, "value": self.oidc.client_id},
                },
                params={"nonce": nonce, "client_id": self.oidc.client_id},
            )
            claims.validate(leeway=60)
        except (JoseError, ValueError) as exc:
            raise Forbidden(f"the issuer's ID token does not check out: {exc}") from None
        return dict(claims)


class OidcHandler(ApiHandler):
    """Base of the two steps: no credentials are needed to log in."""

    def prepare(self) -> None:
        pass

    def issuer(self) -> Issuer:
        auth = self.reads.pipeline().auth
        if auth is None or auth.oidc is None:
            raise NotFound("this master logs in through no OpenID Connect issuer")
        issuers: dict[int, Issuer] = self.application.settings.setdefault("oidc_issuers", {})
        if id(auth.oidc) not in issuers:  # a reconfigure may bring another one
            issuers.clear()
            issuers[id(auth.oidc)] = Issuer(auth.oidc)
        return issuers[id(auth.oidc)]

    def redirect_uri(self) -> str:
        base = self.reads.pipeline().url or f"{self.request.protocol}://{self.request.host}"
        return base.rstrip("/") + CALLBACK


class LoginHandler(OidcHandler):
    async def get(self) -> None:
        issuer = self.issuer()
        metadata = await issuer.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(48)
        pending = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "next": _local(self.get_query_argument("next", "/")),
            "expires": time.time() + OIDC_LOGIN_SECONDS,
        }
        self.set_cookie(
            PENDING_COOKIE,
            self.create_signed_value(PENDING_COOKIE, json.dumps(pending)),
            httponly=True,
            samesite="Lax",  # it must come back with the issuer's redirect, a navigation from another site
            secure=self.request.protocol == "https",
            path="/auth/oidc/",
            expires_days=OIDC_LOGIN_SECONDS / 86400,
        )
        url = prepare_grant_uri(
            metadata["authorization_endpoint"],
            issuer.oidc.client_id,
            "code",
            redirect_uri=self.redirect_uri(),
            scope=" ".join(issuer.oidc.scopes),
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        self.redirect(url)


class CallbackHandler(OidcHandler):
    async def get(self) -> None:
        issuer = self.issuer()
        oidc = issuer.oidc
        error = self.get_query_argument("error", None)
        if error is not None:
            said = self.get_query_argument("error_description", "")
            raise Unauthorized(f"the issuer did not log you in: {error}" + (f" ({said})" if said else ""))
        raw = self.get_signed_cookie(PENDING_COOKIE, max_age_days=OIDC_LOGIN_SECONDS / 86400 + 1)
        pending = json.loads(raw) if raw else None
        if not pending or pending["expires"] < time.time():
            raise InvalidRequest("this login began elsewhere or long ago: log in again")
        self.clear_cookie(PENDING_COOKIE, path="/auth/oidc/")
        if not hmac.compare_digest(self.get_query_argument("state", ""), pending["state"]):
            raise Forbidden("the login's state does not match the one this browser began with")
        code = self.get_query_argument("code", "")
        if not code:
            raise InvalidRequest("the issuer sent no code")
        tokens = await self.exchange(issuer, code, pending["verifier"])
        if not isinstance(tokens.get("id_token"), str):
            raise Unauthorized("the issuer answered without an ID token (is 'openid' among the client's scopes?)")
        claims = await issuer.verify(tokens["id_token"], pending["nonce"])
        wanted = {oidc.user_claim, oidc.groups_claim}
        if not wanted <= set(claims) and isinstance(tokens.get("access_token"), str):
            claims = {**await issuer.userinfo(tokens["access_token"], claims["sub"]), **claims}
        user = claims.get(oidc.user_claim)
        if not isinstance(user, str) or not user:
            raise Forbidden(f"the issuer's ID token has no {oidc.user_claim!r} to name you by")
        if oidc.user_claim == "email" and claims.get("email_verified") is False:
            raise Forbidden(f"the issuer has not verified the email {user}")
        groups = claims.get(oidc.groups_claim) or []
        groups = [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []
        start_session(self, self.reads.pipeline().auth, user, groups=groups, via="oidc")
        self.redirect(pending["next"])

    async def exchange(self, issuer: Issuer, code: str, verifier: str) -> dict[str, Any]:
        """Trade the code for tokens at the issuer's token endpoint, as the client it registered."""
        oidc = issuer.oidc
        pipeline = self.reads.pipeline()
        secret = render(oidc.client_secret, SecretsOnly(lambda name: secrets.lookup(pipeline.secrets, name)))
        endpoint = (await issuer.metadata())["token_endpoint"]
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=self.redirect_uri(), code_verifier=verifier
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        endpoint, headers, body = ClientAuth(oidc.client_id, secret, oidc.client_auth).prepare(
            "POST", endpoint, headers, body
        )
        return await _post_form(endpoint, body, headers)


def _local(target: str) -> str:
    """``target`` if it is a path on this master (``/#/builds/3``), else ``/``: no open redirect."""
    if target.startswith("/") and not target.startswith(("//", "/\\")) and "\n" not in target:
        return target
    return "/"


async def _get_json(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    from tornado.httpclient import AsyncHTTPClient

    response = await AsyncHTTPClient().fetch(url, headers=headers, raise_error=False, request_timeout=OIDC_TIMEOUT)
    return _answer(url, response)


async def _post_form(url: str, body: str, headers: dict[str, str]) -> dict[str, Any]:
    from tornado.httpclient import AsyncHTTPClient

    response = await AsyncHTTPClient().fetch(
        url, method="POST", body=body, headers=headers, raise_error=False, request_timeout=OIDC_TIMEOUT
    )
    return _answer(url, response)


def _answer(url: str, response: Any) -> dict[str, Any]:
    try:
        data = json.loads(response.body or b"")
    except ValueError:
        data = None
    if response.code != 200 or not isinstance(data, dict):
        said = data.get("error_description") or data.get("error") if isinstance(data, dict) else response.reason
        log.warning("the OpenID issuer answered %s from %s: %s", response.code, url, said)
        raise Unauthorized(f"the issuer refused ({response.code}): {said}")
    return data


def oidc_routes(services: WebServices) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"services": services}
    return [(OIDC_LOGIN, LoginHandler, args), (CALLBACK, CallbackHandler, args)]
