"""A real OpenID Connect provider for the single sign-on tests: panva's oidc-provider (OpenID
Certified), from the npm registry, run by node on a free loopback port.

It checks what a relying party sends as any issuer does: the client's id and secret, the redirect
URI registered, PKCE (S256, required of every client here), and it puts the nonce asked for in the
ID token. Its development login pages take any user name (and any password); the accounts of the
configuration give each user's groups. Every login and token exchange is logged as a JSON line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .support import free_port, wait_for

SOURCE = Path(__file__).parent / "oidc_provider"
FILES = ("package.json", "package-lock.json", "provider.mjs")


def install() -> Path:
    """The provider with its packages installed (``npm ci``, once per version of its files)."""
    digest = hashlib.sha256(b"".join((SOURCE / name).read_bytes() for name in FILES)).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"flowbot-oidc-provider-{digest}"
    with open(f"{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test processes running side by side install it once
        if not (target / "node_modules" / "oidc-provider").exists():
            staging = Path(tempfile.mkdtemp(prefix="flowbot-oidc-provider-"))
            for name in FILES:
                shutil.copy(SOURCE / name, staging / name)
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=staging, check=True, timeout=300
            )
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
    return target


class OidcProvider:
    """The provider, with one confidential client (``client_id``/``client_secret``) that may come
    back to ``redirect_uris``, and ``accounts`` (user name -> ``{"groups": [...]}``)."""

    def __init__(
        self,
        installed: Path,
        directory: Path,
        *,
        redirect_uris: list[str],
        accounts: dict[str, Any],
        client_id: str = "flowbot",
        client_secret: str = "client-secret",
    ):
        self.installed = installed
        self.directory = directory
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client_id, self.client_secret = client_id, client_secret
        self.log = directory / "provider.log"
        client = {
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uris": redirect_uris,
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
        self.config = directory / "provider.json"
        self.config.write_text(json.dumps({"clients": [client], "accounts": accounts}))
        self.process: subprocess.Popen | None = None

    def start(self) -> OidcProvider:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["node", str(self.installed / "provider.mjs"), str(self.port), str(self.config)],
                stdout=log,
                stderr=log,
            )
        wait_for(lambda: any(e["event"] == "ready" for e in self.events()) or self._died(), 30, "the provider")
        return self

    def _died(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the OpenID provider exited: {self.log.read_text()[-2000:]}")
        return False

    def events(self) -> list[dict[str, Any]]:
        """What it logged: ``{"event": "grant.success" | "grant.error" | ..., ...}`` each."""
        events = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
