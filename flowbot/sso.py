"""Single sign-on: logging in through an OpenID Connect provider, or behind a proxy that did it.

``OpenIDConnect`` lets people log in on the web page through any OpenID Connect issuer (Keycloak,
GitLab, Google, Okta, Dex, Authentik...): the master sends them to the issuer with an Authorization
Code request protected by PKCE, state and nonce, and takes the code back for an ID token whose
signature, issuer, audience, expiry and nonce it checks (with Authlib) before it gives them a
session. ``ProxyHeader`` trusts the user (and groups) that a reverse proxy which logs people in
(oauth2-proxy, Pomerium, an nginx ``auth_request``) puts in a header, only from the proxy's own
addresses: a header from anywhere else is ignored. Both give names and groups that
:class:`~flowbot.roles.Role` can name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .location import caller
from .properties import Renderable


class OpenIDConnect:
    """Log in through an OpenID Connect issuer.

    Register the master with the issuer as a confidential client whose redirect URI is
    ``{Pipeline(url=)}/auth/oidc/callback``.

    Args:
        issuer: the issuer's URL (its discovery document is ``{issuer}/.well-known/openid-configuration``);
            https, or http on a loopback address.
        client_id, client_secret: the master's credentials with the issuer (the secret best one of
            the pipeline's secrets, ``Interpolate("%(secret:oidc_secret)s")``).
        name: what the login button says: ``Log in with {name}``.
        scopes: asked for besides ``openid``.
        user_claim: the ID token's claim that names the user (``email``, ``preferred_username``,
            ``sub``...); an email the issuer says is not verified is refused.
        groups_claim: the claim that lists the user's groups, for roles.
        client_auth: how the master shows its secret at the token endpoint: ``client_secret_basic``
            or ``client_secret_post``.

    Raises:
        ConfigError: an issuer that is not an https URL, an empty client id, an unknown client_auth.
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | Renderable,
        *,
        name: str = "single sign-on",
        scopes: Iterable[str] = ("email", "profile"),
        user_claim: str = "email",
        groups_claim: str = "groups",
        client_auth: str = "client_secret_basic",
    ):
        self.defined_at = caller()
        where = (self.defined_at.filename, self.defined_at.lineno) if self.defined_at else (None, None)
        parts = urlsplit(issuer) if isinstance(issuer, str) else None
        plain = parts is not None and parts.scheme == "http" and _is_loopback(parts.hostname or "")
        if parts is None or not parts.hostname or not (parts.scheme == "https" or plain):
            raise ConfigError(f"OpenIDConnect issuer must be an https:// URL, not {issuer!r}", *where)
        if not isinstance(client_id, str) or not client_id:
            raise ConfigError("OpenIDConnect needs the client_id the issuer gave the master", *where)
        if not (isinstance(client_secret, str) and client_secret) and not isinstance(client_secret, Renderable):
            raise ConfigError("OpenIDConnect client_secret must be a string or a secret (Interpolate)", *where)
        if client_auth not in ("client_secret_basic", "client_secret_post"):
            raise ConfigError(
                f"client_auth must be 'client_secret_basic' or 'client_secret_post', not {client_auth!r}", *where
            )
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.name = name
        self.scopes = ["openid", *(s for s in ([scopes] if isinstance(scopes, str) else scopes) if s != "openid")]
        self.user_claim = user_claim
        self.groups_claim = groups_claim
        self.client_auth = client_auth

    def __repr__(self) -> str:
        return f"OpenIDConnect({self.issuer!r}, client_id={self.client_id!r})"


class ProxyHeader:
    """Take the user a trusted reverse proxy names in a header (oauth2-proxy style).

    Args:
        trusted: the proxy's addresses or networks (``"127.0.0.1"``, ``"10.0.0.0/24"``): the headers
            of a request from anywhere else are ignored.
        user: the header naming the user (oauth2-proxy: ``X-Forwarded-User``, or ``X-Forwarded-Email``).
        groups: the header listing the user's groups, separated by commas (None: none).

    Raises:
        ConfigError: no trusted address, or one that is no address or network.
    """

    def __init__(
        self,
        *,
        trusted: Iterable[str],
        user: str = "X-Forwarded-User",
        groups: str | None = "X-Forwarded-Groups",
    ):
        self.defined_at = caller()
        where = (self.defined_at.filename, self.defined_at.lineno) if self.defined_at else (None, None)
        listed = [trusted] if isinstance(trusted, str) else list(trusted)
        if not listed:
            raise ConfigError("ProxyHeader needs the proxy's addresses: trusted=['127.0.0.1']", *where)
        self.trusted: list[Any] = []
        for entry in listed:
            try:
                self.trusted.append(ipaddress.ip_network(entry, strict=False))
            except (ValueError, TypeError):
                raise ConfigError(f"ProxyHeader trusted: {entry!r} is no address or network", *where) from None
        if not isinstance(user, str) or not user:
            raise ConfigError("ProxyHeader user must name a header", *where)
        self.user = user
        self.groups = groups

    def trusts(self, address: str) -> bool:
        """Whether a request from ``address`` comes from the proxy."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def __repr__(self) -> str:
        return f"ProxyHeader(user={self.user!r}, trusted={[str(n) for n in self.trusted]})"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
