"""The ``Git`` step: check the build's revision out into the build directory on the worker.

The worker does the work (with its git binary, or dulwich when it has none); the step says what
to check out, shows in its log what the worker did, and sets the ``got_revision`` property to the
commit that was checked out, as Buildbot's source steps do.

With several repositories in one build, each ``Git(codebase=...)`` step checks out its codebase's
source stamp, and ``got_revision`` is ``{codebase: revision}`` (as in Buildbot), so that a
triggered build checks out the same revisions.

A pull request's build names the ref its hosting publishes in the base repository as its branch
(``refs/pull/2/head``): the worker fetches that ref and checks out the build's revision, detached.
On the merge ref (``refs/pull/2/merge``) it checks out the merge, once sure it merges that revision.
"""

from __future__ import annotations

import re
from typing import Any

from ..defaults import SHELL_TIMEOUT
from ..fields import ENV, FLAG, RENDERED_TEXT, SECONDS, TEXT, checked, either, one_of, optional, refuse, whole
from ..pull_requests import is_merge_ref
from ..results import Result
from ..text import why_unkeepable
from .base import BuildContext, CommandResult, StartedCommand, Step

MODES = ("full", "incremental")
METHODS = ("fresh", "clean", "clobber")


class Git(Step):
    """Check out a git repository.

    The revision is the build's (from the change that caused it); a build without one (forced,
    periodic) gets the head of its branch. The branch is the build's, else ``branch``, else the
    repository's default branch; a pull request's is its ref (``refs/pull/N/head``), fetched from
    ``repourl``, which is then the base repository.

    Args:
        repourl: a URL or an absolute path the *worker* can fetch from; may be a renderable.
        branch: the branch to use when the build names none.
        mode: ``"full"`` (clean the tree as ``method`` says) or ``"incremental"`` (fetch and check
            out in place, leaving other files alone).
        method: for ``full`` only: ``"fresh"`` (the default: remove untracked and ignored files),
            ``"clean"`` (remove untracked files, keep ignored ones) or ``"clobber"`` (remove the
            directory and fetch everything again).
        workdir: the directory, relative to the builder's directory on the worker.
        shallow: fetch only the last commit (True) or the last N commits (an int).
        codebase: which of the build's source stamps to check out (see the schedulers' ``codebases``).
        env: extra environment for git (``GIT_SSH_COMMAND``, say).
        timeout: seconds a git process may go without output before it is killed.
        **flags: the flags of :class:`~flowbot.steps.base.Step` (``name``, ``halt_on_failure``...).

    Raises:
        ConfigError: an argument of the wrong kind, or a method with ``incremental``.
    """

    default_name = "git"

    @checked(
        repourl=RENDERED_TEXT,
        branch=optional(RENDERED_TEXT),
        mode=one_of(*MODES),
        method=optional(one_of(*METHODS)),
        workdir=RENDERED_TEXT,
        shallow=either(FLAG, whole(minimum=1)),
        codebase=TEXT,
        env=ENV,
        timeout=optional(SECONDS),
    )
    def __init__(
        self,
        repourl: Any,
        branch: Any = None,
        *,
        mode: str = "full",
        method: str | None = None,
        workdir: Any = "build",
        shallow: bool | int = False,
        codebase: str = "",
        env: dict[str, Any] | None = None,
        timeout: float | None = SHELL_TIMEOUT,
        **flags: Any,
    ):
        flags.setdefault("halt_on_failure", True)  # nothing to build without the source
        super().__init__(**flags)
        if isinstance(repourl, str) and not repourl.strip():
            raise refuse(self, "repourl", "needs a repository URL or path")
        if mode == "incremental" and method is not None:
            raise refuse(self, "method", "method applies to mode='full' only; incremental leaves the tree as it is")
        if mode == "full":
            method = method or "fresh"
        self.repourl = repourl
        self.branch = branch
        self.mode = mode
        self.method = method
        self.workdir = workdir
        self.shallow = shallow
        self.codebase = codebase
        self.env = dict(env or {})
        self.timeout = timeout

    def command_args(self, build: BuildContext) -> dict[str, Any]:
        """The worker's ``git`` command arguments for this build."""
        stamp = build.sourcestamp(self.codebase) or {}
        branch = stamp.get("branch") or build.render(self.branch) or None
        return {
            "repourl": str(build.render(self.repourl)),
            "branch": branch,
            "revision": stamp.get("revision") or None,
            "merge": is_merge_ref(branch),
            "mode": self.mode,
            "method": self.method,
            "shallow": self.shallow,
            "workdir": build.render(self.workdir),
            "env": {**build.env(), **build.render(self.env)},
            "timeout": self.timeout,
        }

    async def run(self, build: BuildContext) -> Result:
        args = self.command_args(build)
        stamp = build.sourcestamp(self.codebase) or {}
        if stamp.get("repository") and stamp.get("revision") and not _same(stamp["repository"], args["repourl"]):
            build.log().header(
                f"the build's revision {stamp['revision']} of codebase {self.codebase!r} comes from "
                f"{stamp['repository']}, not {args['repourl']}: if they are different repositories, give "
                "each its own codebase= (on its source and its Git step)"
            )
        return self._judge(build, await build.run_command("git", args))

    async def resume(self, build: BuildContext, command: StartedCommand) -> Result:
        self.command_args(build)  # rendered again for the secrets it uses (a token in the URL, say)
        return self._judge(build, await command)

    def _judge(self, build: BuildContext, outcome: CommandResult) -> Result:
        got = outcome.data.get("got_revision")
        if outcome.rc != 0 or not got:
            return Result.FAILURE
        # The worker's word: a revision goes into the request of any build this one triggers.
        why = why_unkeepable(got) if isinstance(got, str) else "is not text"
        if why is not None:
            build.log().header(f"the worker reported got_revision {got!r}, which {why}: no revision")
            return Result.FAILURE
        previous = build.properties.get("got_revision")
        if self.codebase or isinstance(previous, dict):
            got = {**(previous if isinstance(previous, dict) else {}), self.codebase: got}
        build.set_property("got_revision", got, f"{type(self).__name__} Step")
        return Result.SUCCESS


def _same(one: str, other: str) -> bool:
    """Whether two repository URLs or paths end alike (``owner/name``, whatever the protocol)."""

    def tail(url: str) -> list[str]:
        return re.split(r"[/:\\]", url.strip().rstrip("/").removesuffix(".git").lower())[-2:]

    return tail(one) == tail(other)
