"""GitPoller against real repositories made with the git binary, without a master.

A small in-memory context stands in for the master (the source only sees the
``SourceContext`` protocol); the restart test with a real master is in ``tests/e2e/test_git.py``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from flowbot import GitPoller
from flowbot.records import Change

from ..gitrepos import GitRepo
from ..support import free_port, wait_for


class Context:
    """What a master gives a source: changes are kept in a list, state in a dict (as JSON would).

    ``crashed`` plays a master that dies after storing a change: every later write fails.
    """

    def __init__(self, basedir: Path | None):
        self.basedir = basedir
        self.changes: list[Change] = []
        self.state: dict[str, Any] = {}
        self.crashed = False
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def add_change(self, change: Change, state: dict[str, Any] | None = None) -> int:
        self._check()
        self.changes.append(change)
        self.state.update({k: _copy(v) for k, v in (state or {}).items()})
        return len(self.changes)

    async def get_state(self) -> dict[str, Any]:
        return {k: _copy(v) for k, v in self.state.items()}

    async def set_state(self, values: dict[str, Any]) -> None:
        self._check()
        self.state.update({k: _copy(v) for k, v in values.items()})

    def _check(self) -> None:
        if self.crashed:
            raise ConnectionError("the master is gone")


def _copy(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "project")
    repo.commit("Initial commit", {"README.md": "hello\n"})
    return repo


async def started(poller: GitPoller, context: Context) -> GitPoller:
    """Start ``poller`` without its loop polling by itself (tests call ``poll`` when they want)."""
    poller.poll_interval = 3600
    await poller.start(context)
    await asyncio.sleep(0.05)
    await until(lambda: "branches" in context.state)  # the loop's first poll
    return poller


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (up to ten seconds) for what a poller's own loop does."""
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.05)


async def test_first_poll_records_heads_then_reports_each_new_commit_oldest_first(repo, tmp_path):
    # Given a repository with history, polled once
    repo.commit("Second commit", {"src/app.py": "print(1)\n"})
    context = Context(tmp_path / "master")
    poller = await started(GitPoller(repo.url, branches=["main"], project="demo", category="push"), context)
    try:
        assert context.changes == []
        assert context.state["branches"] == {"main": repo.head()}

        # When three commits land, one of them by Bob, one deleting a file
        first = repo.commit("Add the parser", {"src/parser.py": "def parse(): ...\n"}, when=1_700_000_000)
        second = repo.commit(
            "Fix the app\n\nLonger text.", {"src/app.py": "print(2)\n", "docs/x.md": "x"}, author="Bob B <bob@b.org>"
        )
        third = repo.commit("Remove the parser", {"src/parser.py": None})
        assert await poller.poll() == 3

        # Then each is one change, with what a person would want to know of it
        assert [c.revision for c in context.changes] == [first, second, third]
        one, two, three = context.changes
        assert one.branch == "main" and one.repository == repo.url
        assert one.project == "demo" and one.category == "push" and one.revlink == ""
        assert one.author == "Alice Example <alice@example.org>"
        assert one.committer == "Carol Committer <carol@example.org>"
        assert one.comments == "Add the parser"
        assert one.files == ("src/parser.py",)
        assert one.when == 1_700_000_000
        assert two.author == "Bob B <bob@b.org>"
        assert two.comments == "Fix the app\n\nLonger text."
        assert sorted(two.files) == ["docs/x.md", "src/app.py"]
        assert three.files == ("src/parser.py",)
        # and the cache lives in the master's directory
        assert list((tmp_path / "master" / "gitpoller-work").iterdir())

        # And nothing new means nothing reported
        assert await poller.poll() == 0
        assert context.state == {"branches": {"main": third}, "seen": {}}
    finally:
        await poller.stop()


async def test_default_branch_all_branches_new_and_deleted_branches(repo, tmp_path):
    context = Context(None)
    everything = await started(GitPoller(repo.url, branches=True, name="all"), context)
    default = await started(GitPoller(repo.url, name="default"), Context(None))
    try:
        # A new branch reports only the commits no known branch had
        repo.checkout("feature", new=True)
        on_feature = repo.commit("Feature work")
        repo.checkout("main")
        on_main = repo.commit("Main work")
        assert await everything.poll() == 2
        assert {(c.branch, c.revision) for c in context.changes} == {("feature", on_feature), ("main", on_main)}
        assert default._context is not None
        assert await default.poll() == 1  # only main, the repository's HEAD
        assert [c.branch for c in default._context.changes] == ["main"]

        # A deleted branch is forgotten; made again, only its own new commits are reported
        repo.git("branch", "-q", "-D", "feature")
        assert await everything.poll() == 0
        assert set(context.state["branches"]) == {"main"}
        repo.checkout("feature", new=True)
        again = repo.commit("Feature, again")
        assert await everything.poll() == 1
        assert context.changes[-1].revision == again and context.changes[-1].branch == "feature"

        # Tags are not branches
        repo.git("tag", "v1.0")
        assert await everything.poll() == 0
    finally:
        await everything.stop()
        await default.stop()


async def test_merges_report_files_against_the_first_parent(repo, tmp_path):
    context = Context(tmp_path)
    poller = await started(GitPoller(repo.url, branches=["main"]), context)
    try:
        repo.checkout("topic", new=True)
        topic = repo.commit("Topic change", {"topic.txt": "t\n"})
        repo.checkout("main")
        mainline = repo.commit("Mainline change", {"main.txt": "m\n"})
        repo.git("merge", "-q", "--no-ff", "-m", "Merge topic", "topic")
        merge = repo.head()
        assert await poller.poll() == 3
        by_revision = {c.revision: c for c in context.changes}
        assert set(by_revision) == {topic, mainline, merge}
        assert context.changes[-1].revision == merge  # parents come first
        assert by_revision[merge].files == ("topic.txt",)
        assert by_revision[merge].comments == "Merge topic"
    finally:
        await poller.stop()


async def test_a_force_push_reports_the_new_commits_and_never_the_old_ones(tmp_path):
    # Given a server repository and a clone that pushes to it
    server = GitRepo(tmp_path / "server.git", bare=True)
    work = GitRepo(tmp_path / "work")
    work.commit("Base", {"a.txt": "a\n"})
    work.git("push", "-q", server.url, "main")
    context = Context(tmp_path)
    poller = await started(GitPoller(server.url, branches=["main"]), context)
    try:
        old = work.commit("Soon rewritten")
        work.git("push", "-q", server.url, "main")
        assert await poller.poll() == 1

        # When history is rewritten and force-pushed
        work.git("reset", "-q", "--hard", "HEAD~1")
        new = work.commit("The rewrite")
        work.git("push", "-q", "--force", server.url, "main")
        assert await poller.poll() == 1

        # Then only the rewrite is new
        assert [c.revision for c in context.changes] == [old, new]
        assert context.state["branches"] == {"main": new}
    finally:
        await poller.stop()


async def test_state_survives_a_new_poller_and_a_lost_cache(repo, tmp_path):
    context = Context(tmp_path)
    poller = await started(GitPoller(repo.url, branches=["main"]), context)
    await poller.stop()

    # While no poller runs, two commits land, and the cache is lost
    first = repo.commit("While stopped, 1")
    second = repo.commit("While stopped, 2")
    shutil.rmtree(tmp_path / "gitpoller-work")

    again = GitPoller(repo.url, branches=["main"])
    await again.start(context)
    try:
        await until(lambda: len(context.changes) == 2)
        assert [c.revision for c in context.changes] == [first, second]
        assert await again.poll() == 0
    finally:
        await again.stop()


async def test_a_change_recorded_but_not_its_head_is_not_reported_twice(repo, tmp_path):
    context = Context(tmp_path)
    poller = await started(GitPoller(repo.url, branches=["main"]), context)
    try:
        base = repo.head()
        first = repo.commit("One")
        second = repo.commit("Two")
        # As if the master died after storing the first change: its state says so
        context.state = {"branches": {"main": base}, "seen": {"main": [first]}}
        assert await poller.poll() == 1
        assert [c.revision for c in context.changes] == [second]
        assert context.state == {"branches": {"main": second}, "seen": {}}
    finally:
        await poller.stop()


async def test_a_master_that_dies_right_after_storing_a_change_never_reports_it_again(repo, tmp_path):
    # Given a poller, and a commit it reports, after which the master dies before writing more
    context = Context(tmp_path)
    poller = await started(GitPoller(repo.url, branches=["main"]), context)
    try:
        first = repo.commit("One")
        real_add_change = context.add_change

        async def add_change_then_crash(change: Change, state: dict[str, Any] | None = None) -> int:
            change_id = await real_add_change(change, state)
            context.crashed = True
            return change_id

        context.add_change = add_change_then_crash
        with pytest.raises(ConnectionError):
            await poller.poll()
    finally:
        await poller.stop()

    # When a master starts again, with another commit on the branch
    context.add_change, context.crashed = real_add_change, False
    second = repo.commit("Two")
    again = await started(GitPoller(repo.url, branches=["main"]), context)
    try:
        await until(lambda: len(context.changes) >= 2)

        # Then the first commit was reported once, and the second once
        assert [c.revision for c in context.changes] == [first, second]
        assert await again.poll() == 0
    finally:
        await again.stop()


async def test_polling_errors_are_logged_and_retried(tmp_path, caplog):
    # Given a poller whose repository does not exist yet
    missing = tmp_path / "later"
    context = Context(tmp_path)
    poller = GitPoller(str(missing), branches=["main"], poll_interval=0.2)
    with caplog.at_level(logging.WARNING, logger="flowbot.sources.git_poller"):
        await poller.start(context)
        try:
            for _ in range(100):
                if "polling" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert f"git poller gitpoller:later: polling {missing} failed, trying again in 0.2 s" in caplog.text

            # When it appears, the poller carries on by itself
            repo = GitRepo(missing)
            head = repo.commit("First")
            for _ in range(100):
                if context.state.get("branches"):
                    break
                await asyncio.sleep(0.05)
            assert context.state["branches"] == {"main": head}
            assert context.changes == []
        finally:
            await poller.stop()


@pytest.mark.parametrize("protocol", ["git", "http"])
async def test_remote_repositories_over_git_and_http(repo, tmp_path, protocol):
    # Given the repository served by a real server on loopback
    bare = tmp_path / "served" / "project.git"
    subprocess.run(["git", "clone", "-q", "--bare", repo.url, str(bare)], check=True)
    port = free_port()
    if protocol == "git":
        argv = ["git", "daemon", "--export-all", f"--base-path={bare.parent}", "--listen=127.0.0.1", f"--port={port}"]
        argv += ["--reuseaddr", str(bare.parent)]
        url = f"git://127.0.0.1:{port}/project.git"
    else:
        argv = [sys.executable, "-m", "dulwich.web", "-l", "127.0.0.1", "-p", str(port), str(bare)]
        url = f"http://ci-bot:s3cret-token@127.0.0.1:{port}/"  # the credentials stay with the poller
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _listening(port), 10, f"the {protocol} server")
    context = Context(tmp_path)
    poller = await started(GitPoller(url, branches=["main"]), context)
    try:
        assert context.state["branches"] == {"main": repo.head()}

        # When a commit is pushed to the server
        work = GitRepo(tmp_path / "work")
        work.git("pull", "-q", str(bare), "main")
        new = work.commit("Over the wire", {"net.txt": "n\n"})
        work.git("push", "-q", str(bare), "main")

        # Then the poller hears of it over the network
        assert await poller.poll() == 1
        assert context.changes[0].revision == new
        assert context.changes[0].files == ("net.txt",)
        assert context.changes[0].repository == url.replace("ci-bot:s3cret-token@", "")
    finally:
        await poller.stop()
        server.terminate()
        server.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="needs a repository URL"):
        GitPoller("")
    with pytest.raises(TypeError, match=r"try \['main'\]"):
        GitPoller("/srv/repo", branches="main")
    with pytest.raises(ValueError, match="non-empty list of branch names"):
        GitPoller("/srv/repo", branches=[])
    with pytest.raises(ValueError, match="positive number of seconds"):
        GitPoller("/srv/repo", poll_interval=0)
    assert GitPoller("https://u:secret@example.org/group/project.git").name == "gitpoller:project"
    assert "secret" not in repr(GitPoller("https://u:secret@example.org/group/project.git"))


async def test_workdir_is_where_the_cache_goes_and_a_working_clone_is_refused(repo, tmp_path):
    # A relative workdir is inside the master's directory
    context = Context(tmp_path / "master")
    poller = await started(GitPoller(repo.url, workdir="caches/project"), context)
    await poller.stop()
    assert (tmp_path / "master" / "caches" / "project" / "HEAD").exists()

    # Someone's working clone is never used as a cache (its branches would move)
    clone = GitRepo(tmp_path / "clone")
    clone.commit("Mine")
    poller = GitPoller(repo.url, workdir=clone.path, poll_interval=3600)
    await poller.start(Context(tmp_path / "master"))
    try:
        with pytest.raises(RuntimeError, match="is a working repository, not the poller's cache"):
            await poller.poll()
    finally:
        await poller.stop()
