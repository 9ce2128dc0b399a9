"""Who may control a master: users with passwords, API tokens, single sign-on, and roles.

By default a master is open: anyone who reaches its HTTP port may read and act, which suits the
loopback address it binds unless told otherwise. ``Pipeline(auth=Auth(...))`` limits control actions
(force, stop, rebuild, cancel, sendchange, and anything that reconfigures) to the users and tokens
listed, and with ``read="users"`` reads too. This module only holds and checks the secrets; the
master's HTTP layer decides what needs them. Secrets are compared in constant time and never shown
by ``repr`` or logged.

People may also log in through an OpenID Connect issuer (``oidc=``), or come through a reverse
proxy that logged them in (``proxy=``; see :mod:`flowbot.sso`); ``roles=`` says who may do what, per
builder (see :mod:`flowbot.roles`).

A password may be given as it is or hashed with :meth:`Auth.hash_password` (PBKDF2-SHA256), so a
pipeline file kept in version control need not hold it in clear. PBKDF2 is slow on purpose, so a
hashed password is checked on a thread of its own, never on the master's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from .errors import ConfigError
from .fields import FILLED_TEXT, TEXT, checked, either, list_of, mapping, optional, where
from .roles import Permission, Role
from .sso import OpenIDConnect, ProxyHeader

_HASH_PREFIX = "pbkdf2_sha256$"
#: PBKDF2 rounds of new hashes: slow enough to hurt guessing, quick enough for one login.
HASH_ITERATIONS = 200_000

#: Where hashed passwords are checked: one thread, so a burst of guesses takes at most one core
#: and the event loop keeps the other.
_HASHING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowbot-password")


class Auth:
    """Users and API tokens allowed to control the master.

    Args:
        users: user name -> password (plain, or from :meth:`hash_password`); for the web page's
            login form and HTTP basic authentication.
        tokens: API tokens for scripts and the CLI (``Authorization: Bearer TOKEN``), as a list, or
            as a mapping of a name (shown as who acted) to the token.
        read: ``"open"`` (anyone may read, the default) or ``"users"`` (reads need credentials too).
        session_secret: signs the web page's login cookies; by default the master makes a random
            one when it starts (everyone logs in again after a restart, not after a reconfigure).
        oidc: log in on the web page through an OpenID Connect issuer.
        proxy: take the user a trusted reverse proxy names in a header.
        roles: who may do what, per builder; without roles, everyone the master knows may do all.

    Raises:
        ConfigError: an empty name or secret, an unknown ``read`` setting, or ``oidc``, ``proxy``
            or ``roles`` of the wrong kind.
    """

    @checked(
        users=optional(mapping(TEXT, TEXT, "a dict of user names to passwords")),
        tokens=either(mapping(TEXT, TEXT, "a dict of names to tokens"), list_of(TEXT, "a list of tokens")),
        session_secret=optional(FILLED_TEXT),
    )
    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        tokens: Iterable[str] | Mapping[str, str] = (),
        read: str = "open",
        session_secret: str | None = None,
        oidc: OpenIDConnect | None = None,
        proxy: ProxyHeader | None = None,
        roles: Iterable[Role] = (),
    ):
        self._users = dict(users or {})
        if isinstance(tokens, Mapping):
            named = dict(tokens)
        else:
            named = {f"token {i + 1}": token for i, token in enumerate(tokens)}
        for kind, table in (("user", self._users), ("token", named)):
            for name, secret in table.items():
                if not isinstance(name, str) or not name or not isinstance(secret, str) or not secret:
                    raise ConfigError.at(
                        f"every {kind} needs a non-empty name and secret (got one for {name!r})",
                        where(self, f"{kind}s"),
                    )
        self._tokens = {token: name for name, token in named.items()}
        if read not in ("open", "users"):
            raise ConfigError.at(f"read must be 'open' or 'users', not {read!r}", where(self, "read"))
        self.read = read
        self.session_secret = session_secret
        if oidc is not None and not isinstance(oidc, OpenIDConnect):
            raise ConfigError.at(f"oidc must be an OpenIDConnect, not {oidc!r}", where(self, "oidc"))
        if proxy is not None and not isinstance(proxy, ProxyHeader):
            raise ConfigError.at(f"proxy must be a ProxyHeader, not {proxy!r}", where(self, "proxy"))
        self.oidc = oidc
        self.proxy = proxy
        self.roles = list(roles)
        for role in self.roles:
            if not isinstance(role, Role):
                raise ConfigError.at(f"roles must be Role objects, not {role!r}", where(self, "roles"))
        # Hashed passwords that checked out, by a digest of what was sent: PBKDF2 is slow on
        # purpose, and basic authentication would pay for it on every request.
        self._verified: set[bytes] = set()
        #: A stored hash to check an unknown user's password against, so that checking takes as
        #: long whether or not the name exists (the answer is no either way).
        self._decoy = next((stored for stored in self._users.values() if stored.startswith(_HASH_PREFIX)), None)

    @property
    def users(self) -> list[str]:
        """The user names (never the passwords)."""
        return sorted(self._users)

    @property
    def reads_open(self) -> bool:
        return self.read == "open"

    async def check_password(self, user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s (a hashed one is checked off the event loop).

        Any text is checked, even text no user could have (a lone surrogate, from JSON): it is wrong.
        """
        given = _utf8(password)
        stored = self._users.get(user)
        if stored is None:  # take as long as for a user that exists
            if self._decoy is not None:
                await asyncio.get_running_loop().run_in_executor(_HASHING, _verify_hash, self._decoy, given)
            else:
                hmac.compare_digest(given, given)
            return False
        if stored.startswith(_HASH_PREFIX):
            key = hashlib.sha256(b"\0".join([_utf8(user), given, stored.encode()])).digest()
            if key in self._verified:
                return True
            if await asyncio.get_running_loop().run_in_executor(_HASHING, _verify_hash, stored, given):
                self._verified.add(key)
                return True
            return False
        return hmac.compare_digest(stored.encode(), given)

    def token_owner(self, token: str) -> str | None:
        """The name of the API token ``token``, or None when it is not one."""
        for known, name in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return name
        return None

    def has_user(self, user: str) -> bool:
        return user in self._users

    def may(self, user: str, groups: Iterable[str], permission: Permission, builder: str | None = None) -> bool:
        """Whether ``user`` (in ``groups``) may do ``permission`` (to ``builder``): always, without roles."""
        return not self.roles or any(role.grants(user, groups, permission, builder) for role in self.roles)

    @staticmethod
    def hash_password(password: str, *, iterations: int = HASH_ITERATIONS) -> str:
        """A salted PBKDF2-SHA256 hash of ``password`` to put in ``users`` instead of the password."""
        salt = secrets.token_bytes(16)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        return f"{_HASH_PREFIX}{iterations}${_b64(salt)}${_b64(digest)}"

    def __repr__(self) -> str:
        more = "".join(f", {name}={value!r}" for name in ("oidc", "proxy", "roles") if (value := getattr(self, name)))
        return f"Auth(users={self.users!r}, tokens={len(self._tokens)}, read={self.read!r}{more})"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8, a lone surrogate as the bytes it would have (which no valid text has)."""
    return text.encode("utf-8", "surrogatepass")


def _verify_hash(stored: str, password: bytes) -> bool:
    try:
        iterations, salt, digest = stored[len(_HASH_PREFIX) :].split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha256", password, base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, actual)
