"""Real git repositories for tests, made with the git binary (the master itself never runs git)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: Git reads no user or system configuration in tests, so a developer's settings change nothing.
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Alice Example",
    "GIT_AUTHOR_EMAIL": "alice@example.org",
    "GIT_COMMITTER_NAME": "Carol Committer",
    "GIT_COMMITTER_EMAIL": "carol@example.org",
}


class GitRepo:
    """A working repository with a ``main`` branch.

    Args:
        path: where to create it.
        bare: make a bare repository (to push into, as a server would hold it).
    """

    def __init__(self, path: Path, *, bare: bool = False):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main", *(["--bare"] if bare else []))

    @classmethod
    def at(cls, path: Path) -> GitRepo:
        """A repository made elsewhere (a worker's checkout, say), to look into."""
        repo = cls.__new__(cls)
        repo.path = path
        return repo

    @property
    def url(self) -> str:
        return str(self.path)

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **GIT_ENV, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
        return result.stdout.strip()

    def commit(
        self,
        message: str,
        files: dict[str, str | None] | None = None,
        *,
        author: str | None = None,
        when: int | None = None,
    ) -> str:
        """Write ``files`` (None deletes one), commit them, and return the new revision."""
        for name, text in (files or {f"{len(message)}-{abs(hash(message))}.txt": message}).items():
            target = self.path / name
            if text is None:
                self.git("rm", "-q", name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            self.git("add", name)
        env = {}
        if author:
            name, _, email = author.partition(" <")
            env |= {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">")}
        if when is not None:
            env |= {"GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000"}
        self.git("commit", "-q", "--allow-empty", "-m", message, env=env)
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref)

    def checkout(self, branch: str, *, new: bool = False, start: str | None = None) -> None:
        self.git("checkout", "-q", *(["-b"] if new else []), branch, *([start] if start else []))


class Hosting:
    """A bare repository as GitHub holds one: ``main``, and pull request ``number``'s
    ``refs/pull/N/head`` and ``refs/pull/N/merge`` (its head merged into ``main``), pushed there
    from ``clone``, whose branch ``feature`` it proposes. GitLab's are under ``refs/merge-requests``."""

    def __init__(
        self,
        path: Path,
        clone: GitRepo,
        number: int,
        feature: dict[str, str | None] | None = None,
        *,
        refs: str = "refs/pull",
    ):
        self.server = GitRepo(path, bare=True)
        self.clone = clone
        self.number = number
        self.refs = f"{refs}/{number}"
        clone.git("push", "-q", self.server.url, "main")
        clone.checkout("feature", new=True)
        self.head = clone.commit("Add a feature", feature or {"feature.txt": "new\n"})
        clone.checkout("main")
        self.base = clone.commit("Meanwhile on main", {"main.txt": "moved on\n"})
        clone.git("push", "-q", self.server.url, "main")
        self.publish()

    def publish(self) -> None:
        """Push the feature branch to the pull request's head ref, and GitHub's merge of it to its merge ref."""
        clone = self.clone
        clone.git("push", "-q", "--force", self.server.url, f"feature:{self.refs}/head")
        clone.checkout("merge-preview", new=True, start="main")
        clone.git("merge", "-q", "--no-ff", "-m", "Merge feature into main", "feature")
        self.merge = clone.head()
        clone.git("push", "-q", "--force", self.server.url, f"merge-preview:{self.refs}/merge")
        clone.checkout("main")
        clone.git("branch", "-q", "-D", "merge-preview")

    def push(self, files: dict[str, str | None]) -> str:
        """Add a commit changing ``files`` (None removes one) to the pull request; its new head."""
        clone = self.clone
        clone.checkout("feature")
        clone.commit("Push to the pull request", files)
        clone.checkout("main")
        self.publish()
        self.head = clone.head("feature")
        return self.head

    def force_push(self) -> str:
        """Rewrite the pull request's head, and drop its old commit from the server for good."""
        clone = self.clone
        clone.checkout("feature")
        clone.git("commit", "-q", "--amend", "-m", "Add a feature, reworded")
        clone.checkout("main")
        self.publish()
        self.server.git("reflog", "expire", "--expire=now", "--all")
        self.server.git("gc", "-q", "--prune=now")
        return clone.head("feature")
