"""``GitPoller``: a change source that polls a git repository, with dulwich and no git binary.

Every ``poll_interval`` seconds the poller fetches the branches it watches into a bare cache
repository (under the master's directory) and emits one :class:`~flowbot.records.Change` per commit
it has not reported yet, oldest first. As in Buildbot, the first poll only records where each
branch is: a new poller does not replay a repository's whole history.

What it has reported lives in the store (per branch, the last head it reported up to), so a master
that restarts neither misses nor repeats a commit; the cache is only there to make fetches cheap
and may be deleted at any time. A force-push reports the commits of the new history that the old
head did not have, never the old ones again; a deleted branch is forgotten. Polling errors (an
unreachable server, a broken repository) are logged and the poll is tried again next interval.

Caveat: dulwich blocks, so fetches and history walks run on a thread (``asyncio.to_thread``);
two pollers never use the same cache at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..defaults import GIT_POLL_INTERVAL
from ..fields import NAME, PATH, TEXT, checked, optional, refuse
from ..records import Change
from ..text import keepable
from .base import ChangeSource, SourceContext, check_codebase

log = logging.getLogger(__name__)

#: Where caches go inside the master's directory.
CACHE_DIR = "gitpoller-work"

_HEADS = b"refs/heads/"

# One lock per cache directory: a fetch left running by a stopped poller (a thread cannot be
# cancelled) must not race the fetch of the poller that replaced it.
_cache_locks: dict[str, threading.Lock] = {}
_cache_locks_guard = threading.Lock()


def redact_url(url: str) -> str:
    """``url`` without its credentials (``https://host/...`` for ``https://user:token@host/...``),
    for logs and for the changes it reports, which the API serves: a token may be the user name."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def default_name(repo_url: str) -> str:
    """``gitpoller:project`` for ``https://example.org/group/project.git``."""
    tail = re.split(r"[/:\\]", repo_url.rstrip("/\\"))[-1]
    tail = tail.removesuffix(".git") or "repository"
    return f"gitpoller:{tail}"


class GitPoller(ChangeSource):
    """Poll a git repository for new commits.

    Args:
        repo_url: a local path, or a ``https://``, ``http://``, ``git://``, ``ssh://`` or
            ``user@host:path`` URL (whatever dulwich can fetch from).
        branches: the branch names to watch; ``True`` for every branch; a function of a branch
            name for a choice; None (the default) for the repository's default branch (its HEAD).
        poll_interval: seconds between polls.
        name: unique among the pipeline's sources (default ``gitpoller:<repository name>``); what
            the poller remembers is kept under it, so renaming a poller starts it afresh.
        project: the ``project`` of its changes.
        codebase: the ``codebase`` of its changes: which ``Git(codebase=...)`` step checks them out
            when a pipeline builds several repositories together.
        category: the ``category`` of its changes.
        workdir: where the bare cache repository goes; relative paths are inside the master's
            directory (default ``gitpoller-work/<name>``).

    Raises:
        ValueError, TypeError: an argument makes no sense (an empty URL, a zero interval...).
    """

    @checked(name=optional(NAME), project=TEXT, category=optional(TEXT), workdir=optional(PATH))
    def __init__(
        self,
        repo_url: str,
        branches: Iterable[str] | bool | Callable[[str], bool] | None = None,
        poll_interval: float = GIT_POLL_INTERVAL,
        name: str | None = None,
        project: str = "",
        category: str | None = None,
        workdir: str | Path | None = None,
        codebase: str = "",
    ):
        if not isinstance(repo_url, (str, Path)) or not str(repo_url).strip():
            raise refuse(self, "repo_url", f"needs a repository URL or path; got {repo_url!r}")
        repo_url = str(repo_url)
        super().__init__(name if name is not None else default_name(repo_url))
        self.repo_url = repo_url
        self.branches = _branch_filter(branches)
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)) or poll_interval <= 0:
            raise refuse(
                self, "poll_interval", f"poll_interval must be a positive number of seconds; got {poll_interval!r}"
            )
        self.poll_interval = float(poll_interval)
        self.project = project
        self.codebase = check_codebase(codebase)
        self.category = category
        self.workdir = workdir
        self._context: SourceContext | None = None
        self._cache: Path | None = None
        self._tempdir: str | None = None
        self._task: asyncio.Task | None = None
        self._emitting = asyncio.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, context: SourceContext) -> None:
        self._context = context
        self._emitting = asyncio.Lock()  # made here: a lock belongs to the loop that runs the poller
        self._cache = self._cache_path(getattr(context, "basedir", None))
        self._task = context.spawn(self._poll_forever(), f"poll {self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # A change being recorded finishes with its state, so a restart does not repeat it.
            async with self._emitting:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._tempdir:
            await asyncio.to_thread(shutil.rmtree, self._tempdir, True)
            self._tempdir = None

    def _cache_path(self, basedir: Path | None) -> Path:
        if self.workdir is not None and Path(self.workdir).is_absolute():
            return Path(self.workdir)
        if basedir is None:
            self._tempdir = tempfile.mkdtemp(prefix="flowbot-gitpoller-")
            basedir = Path(self._tempdir)
        if self.workdir is not None:
            return basedir / self.workdir
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("._") or "poller"
        return basedir / CACHE_DIR / f"{slug}-{hashlib.sha1(self.name.encode()).hexdigest()[:8]}"

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a poll that fails is tried again; it never stops the poller
                log.warning(
                    "git poller %s: polling %s failed, trying again in %g s: %s",
                    self.name,
                    redact_url(self.repo_url),
                    self.poll_interval,
                    _describe_error(exc),
                )
            await asyncio.sleep(self.poll_interval)

    # -- one poll -------------------------------------------------------------------------------

    async def poll(self) -> int:
        """Fetch once and emit the changes found; returns how many.

        Raises:
            Exception: whatever the fetch raised (the poll loop logs it and tries again later).
        """
        if self._context is None or self._cache is None:
            raise RuntimeError(f"{self!r} is not started")
        context = self._context
        state = await context.get_state()
        known = state.get("branches")
        seen = {b: list(revs) for b, revs in (state.get("seen") or {}).items()}
        plan = await asyncio.to_thread(self._plan, known, seen)
        heads = dict(known or {})
        for branch in list(heads):
            if branch not in plan.heads:
                log.info("git poller %s: branch %s is gone; forgetting it", self.name, branch)
                del heads[branch]
                seen.pop(branch, None)
        emitted = 0
        for branch, head, changes in plan.updates:
            for change in changes:
                async with self._emitting:
                    seen.setdefault(branch, []).append(change.revision)
                    # Stored with the change, in its transaction: a crash never reports it twice.
                    await context.add_change(change, state={"branches": heads, "seen": seen})
                emitted += 1
            heads[branch] = head
            seen.pop(branch, None)
        if known is None:
            log.info(
                "git poller %s: first poll of %s; starting from %s",
                self.name,
                redact_url(self.repo_url),
                ", ".join(f"{b} at {h[:12]}" for b, h in sorted(plan.heads.items())) or "an empty repository",
            )
            heads = dict(plan.heads)
        if known is None or heads != known or seen != (state.get("seen") or {}):
            await context.set_state({"branches": heads, "seen": seen})
        return emitted

    def _plan(self, known: dict[str, str] | None, seen: dict[str, list[str]]) -> _Plan:
        """Fetch, and work out which commits to report (runs on a thread)."""
        lock_key = str(self._cache)
        with _cache_locks_guard:
            lock = _cache_locks.setdefault(lock_key, threading.Lock())
        with lock, _Mirror.open(self._cache) as mirror:
            heads = mirror.fetch(self.repo_url, self.branches)
            plan = _Plan(heads)
            if known is None:
                return plan
            for branch, head in sorted(heads.items()):
                old = known.get(branch)
                if old == head:
                    continue
                if old is None:  # a new branch: what no known branch had
                    exclude = [rev for rev in known.values() if mirror.has(rev)]
                    commits = mirror.commits(head, exclude)
                elif mirror.has(old):
                    commits = mirror.commits(head, [old])
                else:  # history rewritten and the cache lost: report the new head alone
                    log.warning(
                        "git poller %s: %s was at %s, which is no longer in the repository; "
                        "reporting only its new head %s",
                        self.name,
                        branch,
                        old[:12],
                        head[:12],
                    )
                    commits = [mirror.commit(head)]
                done = set(seen.get(branch, ()))
                changes = [self._change(mirror, c, branch) for c in commits if c.id.decode() not in done]
                plan.updates.append((branch, head, changes))
            return plan

    def _change(self, mirror: _Mirror, commit: Any, branch: str) -> Change:
        text = _decoder(commit)
        return Change(
            branch=branch,
            revision=commit.id.decode(),
            repository=redact_url(self.repo_url),
            project=self.project,
            codebase=self.codebase,
            author=text(commit.author),
            committer=text(commit.committer),
            comments=text(commit.message).rstrip("\n"),
            files=tuple(mirror.changed_files(commit)),
            category=self.category,
            when=float(commit.commit_time),
        )

    def __repr__(self) -> str:
        return f"GitPoller({redact_url(self.repo_url)!r}, name={self.name!r})"


@dataclass
class _Plan:
    """What one fetch found: the heads of the watched branches, and per branch what to report."""

    heads: dict[str, str]
    updates: list[tuple[str, str, list[Change]]] = field(default_factory=list)


class _Mirror:
    """The poller's bare cache repository (blocking; used on a thread)."""

    def __init__(self, repo: Any):
        self.repo = repo

    @classmethod
    def open(cls, path: Path) -> _Mirror:
        from dulwich.errors import NotGitRepository
        from dulwich.repo import Repo

        try:
            repo = Repo(str(path))
        except NotGitRepository:
            if path.exists() and any(path.iterdir()):
                raise RuntimeError(
                    f"{path} exists and is not a git repository; give the poller another workdir"
                ) from None
        else:
            if not repo.bare:  # someone's clone: its branches are not the poller's to move
                repo.close()
                raise RuntimeError(f"{path} is a working repository, not the poller's cache; give it another workdir")
            return cls(repo)
        path.mkdir(parents=True, exist_ok=True)
        return cls(Repo.init_bare(str(path)))

    def __enter__(self) -> _Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.repo.close()

    def fetch(self, url: str, wanted: Callable[[str, bool], bool]) -> dict[str, str]:
        """Fetch the wanted branches from ``url``; returns their heads and keeps them as refs here."""
        from dulwich.client import get_transport_and_path

        store = self.repo.object_store

        def determine_wants(refs: dict[bytes, bytes], depth: int | None = None) -> list[bytes]:
            # HEAD's symref may arrive only with the result; until then, HEAD's commit will do.
            heads = _watched(refs, None, wanted)
            return sorted({sha.encode() for sha in heads.values()} - {sha for sha in refs.values() if sha in store})

        client, path = get_transport_and_path(url)
        result = client.fetch(path, self.repo, determine_wants=determine_wants)
        heads = _watched(result.refs, getattr(result, "symrefs", None), wanted)
        refs = self.repo.refs
        for name in list(refs.keys(_HEADS)):
            if name.decode("utf-8", "replace") not in heads:
                del refs[_HEADS + name]
        for branch, sha in heads.items():
            refs[_HEADS + branch.encode()] = sha.encode()
        return heads

    def has(self, rev: str) -> bool:
        return rev.encode() in self.repo.object_store

    def commit(self, rev: str) -> Any:
        return self.repo.object_store[rev.encode()]

    def commits(self, head: str, exclude: list[str]) -> list[Any]:
        """Commits reachable from ``head`` and from none of ``exclude``, oldest first."""
        from dulwich.walk import ORDER_TOPO, Walker

        walker = Walker(
            self.repo.object_store, [head.encode()], exclude=[r.encode() for r in exclude], order=ORDER_TOPO
        )
        return [entry.commit for entry in walker][::-1]

    def changed_files(self, commit: Any) -> list[str]:
        """Paths the commit changed against its first parent (every path, for a root commit)."""
        from dulwich.diff_tree import tree_changes

        store = self.repo.object_store
        parent_tree = store[commit.parents[0]].tree if commit.parents else None
        paths: list[str] = []
        for change in tree_changes(store, parent_tree, commit.tree):
            for entry in (change.old, change.new):
                if entry is not None and entry.path is not None:
                    path = entry.path.decode("utf-8", "replace")
                    if path not in paths:
                        paths.append(path)
        return paths


def _watched(
    refs: dict[bytes, bytes], symrefs: dict[bytes, bytes] | None, wanted: Callable[[str, bool], bool]
) -> dict[str, str]:
    """``{branch: head}`` of the remote's branches that ``wanted`` keeps."""
    default = _default_branch(refs, symrefs)
    heads = {}
    for ref, sha in refs.items():
        if ref.startswith(_HEADS) and not ref.endswith(b"^{}") and sha is not None:
            branch = ref[len(_HEADS) :].decode("utf-8", "replace")
            if wanted(branch, branch == default):
                heads[branch] = sha.decode()
    return heads


def _default_branch(refs: dict[bytes, bytes], symrefs: dict[bytes, bytes] | None) -> str | None:
    """The branch the remote's HEAD names (or, without symref information, points at)."""
    target = (symrefs or {}).get(b"HEAD")
    if target and target.startswith(_HEADS):
        return target[len(_HEADS) :].decode("utf-8", "replace")
    head = refs.get(b"HEAD")
    if head is None:
        return None
    same = sorted(r for r, sha in refs.items() if r.startswith(_HEADS) and sha == head)
    for preferred in (b"refs/heads/main", b"refs/heads/master"):
        if preferred in same:
            return preferred[len(_HEADS) :].decode()
    return same[0][len(_HEADS) :].decode("utf-8", "replace") if same else None


def _branch_filter(branches: Any) -> Callable[[str, bool], bool]:
    """``fn(branch, is_default) -> watch it?`` from the ``branches`` argument."""
    if branches is None:
        return lambda branch, is_default: is_default
    if branches is True:
        return lambda branch, is_default: True
    if branches is False:
        raise ValueError("GitPoller branches=False watches nothing; give a list of branch names or True")
    if callable(branches):
        return lambda branch, is_default: bool(branches(branch))
    if isinstance(branches, str):
        raise TypeError(f"GitPoller branches must be a list of names, not the string {branches!r}; try [{branches!r}]")
    names = list(branches)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"GitPoller branches must be a non-empty list of branch names or True; got {branches!r}")
    wanted = {n.removeprefix("refs/heads/") for n in names}
    return lambda branch, is_default: branch in wanted


def _decoder(commit: Any) -> Callable[[bytes], str]:
    encoding = (commit.encoding or b"utf-8").decode("ascii", "replace")

    def text(raw: bytes) -> str:
        try:
            decoded = raw.decode(encoding, "replace")
        except LookupError:  # an encoding Python does not know
            decoded = raw.decode("utf-8", "replace")
        # A commit names its own encoding, and some codecs make NULs and lone surrogates of it.
        return keepable(decoded)

    return text


def _describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
