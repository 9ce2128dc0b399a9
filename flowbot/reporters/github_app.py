"""Authenticating to GitHub's API as a GitHub App installation, or with a token.

An App proves who it is with a JSON Web Token signed with its private key (RS256, made with PyJWT
and cryptography), valid ten minutes at most, and exchanges it for an installation access token
(``POST /app/installations/{id}/access_tokens``), which lasts an hour; the token is kept and
exchanged again a few minutes before it expires. Only Apps may write check runs; a token given as
it is must be one of theirs (a workflow's ``GITHUB_TOKEN``, an installation token made elsewhere).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from ..defaults import GITHUB_APP_JWT_LIFETIME, GITHUB_TOKEN_MARGIN
from ..errors import ReportError, ReportRejected
from .transport import send_json

#: Headers of every request to GitHub's REST API.
API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitHubAuth:
    """Where a reporter's ``Authorization`` header comes from: a token, or an App installation.

    Args:
        token: a token, or a reference to a secret (rendered by ``render`` each time).
        app_id, private_key, installation_id: the App's id, its PEM private key (a secret, best),
            and the id of its installation on the repository's account.
        render: fills in the secrets a value refers to (the reporter's :meth:`render`).
    """

    def __init__(
        self,
        *,
        token: Any = None,
        app_id: int | str | None = None,
        private_key: Any = None,
        installation_id: int | str | None = None,
        render: Callable[[Any], Any],
    ):
        #: The token as given (a secret's reference, say), or None for an App.
        self.token = token
        self.app_id = app_id
        self._private_key = private_key
        self.installation_id = installation_id
        self._render = render
        self._installation_token: str | None = None
        self._renew_at = 0.0

    @property
    def is_app(self) -> bool:
        return self.token is None

    async def headers(self, base_url: str, timeout: float) -> dict[str, str]:
        """The headers of a request to the API, with a fresh installation token when an App.

        Raises:
            ReportRejected: the private key cannot sign, or GitHub refuses the App's JWT.
            ReportError: the exchange could not be made this time.
        """
        if not self.is_app:
            return {"Authorization": f"Bearer {self._render(self.token)}", **API_HEADERS}
        if self._installation_token is None or time.time() >= self._renew_at:
            await self._exchange(base_url, timeout)
        return {"Authorization": f"Bearer {self._installation_token}", **API_HEADERS}

    def jwt(self, now: float | None = None) -> str:
        """The App's JSON Web Token: issued a minute ago (GitHub's clock may lag), valid a few minutes.

        Raises:
            ReportRejected: the private key is not an RSA key in PEM form.
        """
        import jwt

        issued = int(now if now is not None else time.time()) - 60
        claims = {"iat": issued, "exp": issued + GITHUB_APP_JWT_LIFETIME, "iss": str(self.app_id)}
        try:
            return jwt.encode(claims, self._render(self._private_key), algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise ReportRejected(f"the GitHub App's private_key cannot sign its token: {exc}") from None

    async def _exchange(self, base_url: str, timeout: float) -> None:
        url = f"{base_url}/app/installations/{self.installation_id}/access_tokens"
        headers = {"Authorization": f"Bearer {self.jwt()}", **API_HEADERS}
        _, body = await send_json(url, {}, headers=headers, timeout=timeout)
        try:
            answer = json.loads(body)
            token, expires = str(answer["token"]), _epoch(answer["expires_at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"GitHub's installation token answer cannot be read ({exc!r})") from None
        self._installation_token = token
        self._renew_at = expires - GITHUB_TOKEN_MARGIN


def _epoch(iso: str) -> float:
    """Epoch seconds of GitHub's ``2016-07-11T22:14:10Z``."""
    stamp = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).timestamp()
