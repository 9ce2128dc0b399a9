"""The ``git`` command: check a revision of a repository out into the build directory.

With a ``git`` binary on the worker's PATH, the command runs git (each process as a ``shell``
command would run, with streamed output, a no-output timeout and interrupts); without one, it
uses dulwich, on a thread so the worker's loop keeps answering the master meanwhile.

Modes follow Buildbot's: ``incremental`` fetches and checks out in place; ``full`` with
``method="fresh"`` (the default) also removes untracked and ignored files, ``"clean"`` removes
untracked files but keeps ignored ones, and ``"clobber"`` removes the directory and starts over.
The finished message's ``data`` carries ``got_revision``, the commit checked out.

A branch may also be a whole ref, such as the ``refs/pull/2/head`` that GitHub publishes in a base
repository for a pull request (GitLab: ``refs/merge-requests/2/head``); it is fetched as it is and
checked out detached. With ``merge``, the ref is a merge that the server made of the revision into
its base (``refs/pull/2/merge``): it is fetched every time, and checked out if it merges the
revision asked for (its parents include it), else the command fails saying the ref has moved on.

Arguments: ``repourl``, ``branch`` (None: the remote's HEAD), ``revision`` (None: the branch's
head), ``merge``, ``mode``, ``method``, ``shallow`` (False, True for depth 1, or a depth),
``workdir``, ``builddir``, ``env``, ``timeout`` (seconds without output, per git process).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CommandError
from .base import Command, Outcome
from .shell import ShellCommand, build_env

MODES = ("full", "incremental")
METHODS = ("fresh", "clean", "clobber")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True, slots=True)
class Wanted:
    """What the master asked to check out."""

    repourl: str
    branch: str | None
    revision: str | None
    mode: str
    method: str | None
    depth: int | None
    #: ``branch`` is a ref the server merged ``revision`` into its base on: check that merge out.
    merge: bool = False

    @property
    def local_branch(self) -> str | None:
        """The branch to check out as, or None to check out detached (a whole ref: not a branch of ours)."""
        return self.branch if self.branch and not self.branch.startswith("refs/") else None

    def missing(self, head: str | None) -> GitFailed:
        """The failure of a revision the repository does not have (``head``: where the branch is now)."""
        message = f"revision {self.revision} is not in {self.repourl}"
        if self.branch and head and head != self.revision:
            message += (
                f": {self.branch} is at {head} there now (it was force-pushed, or rewritten, since this build "
                "was asked for, and a build of the new head checks that out; or the revision is another "
                "repository's)"
            )
        return GitFailed(message)

    def check_merge(self, merge: str, parents: list[str]) -> None:
        """Fail unless the merge ``merge`` (with its ``parents``) is of the revision asked for."""
        revision = self.revision
        if revision is None or merge.startswith(revision) or any(p.startswith(revision) for p in parents):
            return
        raise GitFailed(
            f"{self.branch} of {self.repourl} merges {', '.join(parents[1:]) or 'nothing'} now, not {revision}: "
            "the pull request moved on since this build was asked for; a build of its new head checks that out"
        )


class GitFailed(Exception):
    """A step of the checkout failed; the message says which and why."""

    def __init__(self, message: str, rc: int = 1):
        super().__init__(message)
        self.rc = rc


class GitCommand(Command):
    """Check out ``revision`` (or ``branch``'s head) of ``repourl`` into the working directory."""

    name = "git"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._running: ShellCommand | None = None
        self._interrupted: str | None = None

    async def run(self) -> Outcome:
        wanted = self._arguments()
        repourl, branch, revision = wanted.repourl, wanted.branch, wanted.revision
        env = build_env(self.args.get("env"))
        env["GIT_TERMINAL_PROMPT"] = "0"  # a password prompt would wait forever; fail instead
        target = self.resolve(self.args.get("workdir") or ".")
        if target == self.basedir.resolve():
            raise CommandError("refusing to check out into the worker's basedir itself")
        git = shutil.which("git", path=env.get("PATH", os.defpath))
        tool = f"git ({git})" if git else "dulwich (no git binary on the worker's PATH)"
        self._header(f"checking out {revision or 'the head of ' + (branch or 'the default branch')} of {repourl}")
        self._header(f"mode {wanted.mode}{'/' + wanted.method if wanted.method else ''}, with {tool}")
        try:
            if wanted.method == "clobber" and target.exists():
                self._header(f"removing {target}")
                await asyncio.to_thread(shutil.rmtree, target)
            target.mkdir(parents=True, exist_ok=True)
            checkout = _Binary(self, git, env) if git else _Dulwich(self, env)
            got = await checkout.run(target, wanted)
        except GitFailed as exc:
            if self._interrupted:
                return Outcome(None, "interrupted", self._interrupted)
            return Outcome(exc.rc, None, str(exc))
        except OSError as exc:
            return Outcome(None, "error", f"checkout failed: {exc}")
        if self._interrupted:
            return Outcome(None, "interrupted", self._interrupted)
        self._header(f"got revision {got}")
        self.output.flush()
        return Outcome(0, None, "", {"got_revision": got})

    def _arguments(self) -> Wanted:
        a = self.args
        repourl = a.get("repourl")
        if not isinstance(repourl, str) or not repourl.strip() or repourl.startswith("-"):
            raise CommandError(f"git needs a repository URL or path; got {repourl!r}")
        branch, revision = a.get("branch") or None, a.get("revision") or None
        for what, value in (("branch", branch), ("revision", revision)):
            if value is not None and (not isinstance(value, str) or value.startswith("-") or not value.strip()):
                raise CommandError(f"git {what} must be a name; got {value!r}")
        mode = a.get("mode", "full")
        if mode not in MODES:
            raise CommandError(f"git mode must be one of {MODES}; got {mode!r}")
        method = a.get("method") or ("fresh" if mode == "full" else None)
        if mode == "full" and method not in METHODS:
            raise CommandError(f"git method must be one of {METHODS}; got {method!r}")
        if mode == "incremental" and method is not None:
            raise CommandError("git method applies to mode 'full' only")
        shallow = a.get("shallow", False)
        depth = 1 if shallow is True else (shallow or None)
        if depth is not None and (not isinstance(depth, int) or depth < 1):
            raise CommandError(f"git shallow must be a boolean or a positive depth; got {shallow!r}")
        merge = a.get("merge", False)
        if not isinstance(merge, bool) or (merge and not branch):
            raise CommandError(f"git merge must be true (with a branch, the merge ref) or false; got {merge!r}")
        return Wanted(repourl, branch, revision, mode, method, depth, merge)

    def interrupt(self, reason: str, grace: float) -> None:
        self._interrupted = reason or "interrupted"
        if self._running is not None:
            self._running.interrupt(reason, grace)

    def resume_reading(self) -> None:
        if self._running is not None:
            self._running.resume_reading()

    def _header(self, text: str) -> None:
        self.output.write("header", f"{text}\n".encode())


class _Tee:
    """An output buffer that also keeps what one process printed to stdout."""

    def __init__(self, output: Any):
        self._output = output
        self.stdout = bytearray()

    def write(self, stream: str, data: bytes) -> None:
        if stream == "stdout":
            self.stdout += data
        self._output.write(stream, data)

    def flush(self) -> None:
        self._output.flush()

    @property
    def full(self) -> bool:
        return self._output.full


class _Binary:
    """The checkout with the worker's git binary."""

    def __init__(self, command: GitCommand, git: str, env: dict[str, str]):
        self.command = command
        self.git = git
        self.env = env

    async def run(self, target: Path, wanted: Wanted) -> str:
        repourl, branch, revision, depth = wanted.repourl, wanted.branch, wanted.revision, wanted.depth
        if not (target / ".git").exists():
            await self._git(target, "init", "--quiet")
        fetch = ["fetch", "--force", *(["--depth", str(depth)] if depth else ["--tags"]), "--", repourl]
        wanted_commit = revision or "FETCH_HEAD"
        if wanted.merge:
            assert branch is not None
            rc = await self._git(target, *fetch, branch, check=False)
            if rc != 0:
                raise GitFailed(_no_merge(wanted), rc)
            wanted_commit = await self._read(target, "rev-parse", "FETCH_HEAD^{commit}")
            raw = await self._read(target, "cat-file", "commit", wanted_commit)
            wanted.check_merge(wanted_commit, _parents(raw.splitlines()))
        elif revision is None or not await self._has(target, revision):
            rc = await self._git(target, *fetch, branch or "HEAD", check=False)
            if rc != 0 and revision is None:
                what = f"branch {branch!r}" if branch else "the default branch"
                raise GitFailed(f"could not fetch {what} of {repourl} (git exited with {rc})", rc)
            if revision is not None and not await self._has(target, revision):
                head = await self._read(target, "rev-parse", "--verify", "--quiet", "FETCH_HEAD") if rc == 0 else None
                # Not on the branch (or no such branch any more): ask for the commit itself.
                await self._git(target, *fetch, revision, check=False)
                if not await self._has(target, revision):
                    raise wanted.missing(head)
        where = ["-B", branch] if wanted.local_branch else ["--detach"]
        await self._git(target, "checkout", "--force", "--quiet", *where, f"{wanted_commit}^{{commit}}")
        if wanted.method in ("fresh", "clean"):
            await self._git(target, "clean", "-f", "-f", "-d", *(["-x"] if wanted.method == "fresh" else []))
        tee = _Tee(self.command.output)
        await self._git(target, "rev-parse", "HEAD", output=tee)
        return tee.stdout.decode().strip()

    async def _has(self, target: Path, revision: str) -> bool:
        return await self._git(target, "cat-file", "-e", f"{revision}^{{commit}}", check=False, quiet=True) == 0

    async def _read(self, target: Path, *args: str) -> str:
        """What a git process that does not change anything prints."""
        tee = _Tee(_Null())
        await self._git(target, *args, check=False, quiet=True, output=tee)
        return tee.stdout.decode().strip()

    async def _git(self, target: Path, *args: str, check: bool = True, quiet: bool = False, output: Any = None) -> int:
        if self.command._interrupted:
            raise GitFailed(self.command._interrupted)
        argv = [self.git, *args]
        if not quiet:
            self.command._header("git " + shlex.join(args))
        sink = output or (_Tee(_Null()) if quiet else self.command.output)
        shell = ShellCommand(
            self.command.cmd_id,
            {
                "command": argv,
                "builddir": self.command.args.get("builddir"),
                "workdir": self.command.args.get("workdir") or ".",
                "env": self.env,
                "timeout": self.command.args.get("timeout"),
            },
            self.command.basedir,
            sink,
            lease=self.command.lease,
        )
        self.command._running = shell
        try:
            outcome = await shell.run()
        finally:
            self.command._running = None
        if outcome.reason is not None:
            raise GitFailed(outcome.message or f"git {args[0]}: {outcome.reason}", outcome.rc or 1)
        if check and outcome.rc != 0:
            raise GitFailed(f"git {args[0]} failed with exit code {outcome.rc}", outcome.rc or 1)
        return outcome.rc


class _Null:
    """Where a quiet process's output goes."""

    full = False

    def write(self, stream: str, data: bytes) -> None:
        pass

    def flush(self) -> None:
        pass


class _Dulwich:
    """The checkout with dulwich, for workers without a git binary (blocking parts on a thread)."""

    def __init__(self, command: GitCommand, env: dict[str, str]):
        self.command = command
        self.env = env
        self.loop = asyncio.get_running_loop()

    def say(self, text: str) -> None:
        """Write a line to the log from the checkout's thread (as a header, so the lines keep their order)."""
        self.loop.call_soon_threadsafe(self.command.output.write, "header", f"{text}\n".encode())

    async def run(self, target: Path, wanted: Wanted) -> str:
        return await asyncio.to_thread(self._checkout, target, wanted)

    def _checkout(self, target: Path, wanted: Wanted) -> str:
        from dulwich.client import get_transport_and_path
        from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
        from dulwich.repo import Repo

        repourl, branch, revision = wanted.repourl, wanted.branch, wanted.revision
        with Repo(str(target)) if (target / ".git").exists() else Repo.init(str(target)) as repo:
            found = self._find(repo, revision) if revision and not wanted.merge else None
            if found is None:
                self.say(f"fetching {branch or 'HEAD'} from {repourl}")
                try:
                    client, path = get_transport_and_path(repourl)
                    head, found = self._fetch(client, path, repo, wanted)
                except (GitProtocolError, HangupException, NotGitRepository, OSError) as exc:
                    raise GitFailed(f"could not fetch from {repourl}: {exc}") from None
                if wanted.merge:
                    if head is None:
                        raise GitFailed(_no_merge(wanted))
                    wanted.check_merge(head.decode(), [p.decode() for p in repo[head].parents])
                    found = head
                elif revision is None:
                    if head is None:
                        what = f"branch {branch!r}" if branch else "a default branch"
                        raise GitFailed(f"{repourl} has no {what}")
                    found = head
                elif found is None:
                    raise wanted.missing(head and head.decode())
            if self.command._interrupted:
                raise GitFailed(self.command._interrupted)
            self._check_out(repo, found, wanted.local_branch)
            if wanted.method in ("fresh", "clean"):
                self._clean(repo, target, keep_ignored=wanted.method == "clean")
            return found.decode()

    def _fetch(self, client: Any, path: str, repo: Any, wanted: Wanted) -> tuple[bytes | None, bytes | None]:
        """Fetch the branch's head, then the revision if that did not bring it; returns both shas."""
        branch, revision = wanted.branch, wanted.revision
        store = repo.object_store
        ref = _ref(branch)
        heads: dict[str, bytes] = {}

        def branch_head(refs: dict[bytes, bytes], depth: int | None = None) -> list[bytes]:
            if refs.get(ref):
                heads["head"] = refs[ref]
                return [refs[ref]] if refs[ref] not in store else []
            return []

        client.fetch(path, repo, determine_wants=branch_head, depth=wanted.depth, progress=self._progress())
        head = heads.get("head")
        if head is not None:
            repo.refs[b"refs/remotes/origin/" + ref.removeprefix(b"refs/heads/").removeprefix(b"refs/")] = head
        if revision is None or wanted.merge:
            return head, None
        found = self._find(repo, revision)
        if found is None and _FULL_SHA.match(revision):
            # Not on the branch: ask for the commit itself (servers that allow it give it).
            try:
                client.fetch(
                    path, repo, determine_wants=lambda refs, depth=None: [revision.encode()], depth=wanted.depth
                )
            except Exception as exc:  # each transport refuses in its own way
                self.say(f"the server did not give {revision}: {exc!r}")
            found = self._find(repo, revision)
        return head, found

    def _progress(self):
        def progress(data: bytes) -> None:
            text = data.decode("utf-8", "replace").replace("\r", "\n").strip()
            if text and not text.endswith("%"):
                self.say(text)

        return progress

    def _find(self, repo: Any, revision: str) -> bytes | None:
        from dulwich.objects import Commit
        from dulwich.objectspec import parse_commit

        try:
            commit = parse_commit(repo, revision.encode())
        except (KeyError, ValueError):
            return None
        return commit.id if isinstance(commit, Commit) else None

    def _check_out(self, repo: Any, sha: bytes, branch: str | None) -> None:
        from dulwich import porcelain

        self.say(f"checking out {sha.decode()}" + (f" as branch {branch}" if branch else " (detached)"))
        if branch:
            name = b"refs/heads/" + branch.encode()
            repo.refs.set_symbolic_ref(b"HEAD", name)
        else:
            repo.refs.remove_if_equals(b"HEAD", None)
        porcelain.reset(repo, "hard", sha)

    def _clean(self, repo: Any, target: Path, keep_ignored: bool) -> None:
        """Remove files the index does not know (and ignored ones too, unless ``keep_ignored``)."""
        from dulwich.ignore import IgnoreFilterManager

        tracked = {p.decode("utf-8", "surrogateescape") for p in repo.open_index()}
        ignored = IgnoreFilterManager.from_repo(repo) if keep_ignored else None
        directories: list[Path] = []
        for root, dirs, files in os.walk(target):
            here = Path(root)
            relative = here.relative_to(target)
            for name in list(dirs):
                rel = (relative / name).as_posix()
                if rel == ".git" or (ignored and ignored.is_ignored(rel + "/")):
                    dirs.remove(name)
                else:
                    directories.append(here / name)
            for name in files:
                rel = (relative / name).as_posix()
                if rel not in tracked and not (ignored and ignored.is_ignored(rel)):
                    self.say(f"removing {rel}")
                    os.unlink(here / name)
        for directory in reversed(directories):  # deepest first: the directories left empty go too
            if not any(directory.iterdir()):
                directory.rmdir()


def _ref(branch: str | None) -> bytes:
    """The remote ref a branch names: itself when it is a whole ref (``refs/pull/2/head``)."""
    if not branch:
        return b"HEAD"
    return branch.encode() if branch.startswith("refs/") else b"refs/heads/" + branch.encode()


def _parents(commit: list[str]) -> list[str]:
    """The parents of a commit object, from its raw text's header lines."""
    header = commit[: commit.index("")] if "" in commit else commit
    return [line.split()[1] for line in header if line.startswith("parent ")]


def _no_merge(wanted: Wanted) -> str:
    return (
        f"could not fetch {wanted.branch} of {wanted.repourl}: the server has no merge for it (a pull request "
        "whose changes conflict with its base has none, and a closed one neither)"
    )
