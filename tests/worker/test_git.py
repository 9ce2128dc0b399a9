"""The worker's ``git`` command on real repositories, with the git binary and with dulwich.

Each test runs twice: once as a worker with git on its PATH, once as one without (the command
then uses dulwich). The master's side (the ``Git`` step) is tested in ``tests/e2e/test_git.py``.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from flowbot_worker import protocol
from flowbot_worker.commands import COMMANDS, GitCommand, Outcome
from flowbot_worker.errors import CommandError
from flowbot_worker.output import OutputBuffer

from ..gitrepos import GitRepo, Hosting

NO_GIT_PATH = "/nonexistent-bin"


@pytest.fixture(params=["git", "dulwich"])
def tool(request: pytest.FixtureRequest) -> str:
    if request.param == "git" and shutil.which("git") is None:
        pytest.skip("no git binary here")
    return request.param


@pytest.fixture
def upstream(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "upstream")
    repo.commit("Initial commit", {"README.md": "hello\n", ".gitignore": "*.pyc\n"})
    return repo


async def checkout(basedir: Path, tool: str, **args: Any) -> tuple[Outcome, str]:
    """Run one ``git`` command as the worker would; returns its outcome and its output."""
    loop = asyncio.get_running_loop()
    received: list[bytes] = []
    offsets: dict[str, int] = {}

    def send(kind: str, content: dict, blobs: tuple[bytes, ...]) -> None:
        assert kind == protocol.OUTPUT
        received.append(b"".join(blobs))
        offsets[content["stream"]] = content["offset"] + sum(map(len, blobs))
        loop.call_soon(lambda: output.ack(dict(offsets)))

    output = OutputBuffer("cmd-1", send, lambda: None)
    env = {"PATH": NO_GIT_PATH} if tool == "dulwich" else {}
    command = GitCommand("cmd-1", {"builddir": "unit", "workdir": "build", "env": env, **args}, basedir, output)
    outcome = await command.run()
    output.flush()
    await asyncio.sleep(0)
    return outcome, b"".join(received).decode()


async def test_a_first_checkout_gets_the_head_of_the_branch(tmp_path, upstream, tool):
    outcome, log = await checkout(tmp_path / "w", tool, repourl=upstream.url, branch="main")
    assert outcome == Outcome(0, None, "", {"got_revision": upstream.head()})
    build = tmp_path / "w" / "unit" / "build"
    assert (build / "README.md").read_text() == "hello\n"
    assert f"checking out the head of main of {upstream.url}" in log
    assert ("with git (" if tool == "git" else "with dulwich (no git binary") in log
    assert f"got revision {upstream.head()}" in log


async def test_a_named_revision_and_the_default_branch(tmp_path, upstream, tool):
    first = upstream.head()
    upstream.commit("Second", {"second.txt": "2\n"})
    outcome, _ = await checkout(tmp_path / "w", tool, repourl=upstream.url, revision=first)
    assert outcome.data == {"got_revision": first}
    assert not (tmp_path / "w" / "unit" / "build" / "second.txt").exists()
    # An abbreviated revision works too
    outcome, _ = await checkout(tmp_path / "w2", tool, repourl=upstream.url, revision=first[:10], branch="main")
    assert outcome.data == {"got_revision": first}


async def test_full_fresh_removes_untracked_and_ignored_files_incremental_keeps_them(tmp_path, upstream, tool):
    # Given a checkout with build products lying around
    await checkout(tmp_path / "w", tool, repourl=upstream.url, branch="main")
    build = tmp_path / "w" / "unit" / "build"
    (build / "junk.txt").write_text("untracked")
    (build / "cache").mkdir()
    (build / "cache" / "module.pyc").write_text("ignored")
    (build / "README.md").write_text("edited by a build")

    # When a new commit is checked out incrementally, the build's files stay
    new = upstream.commit("Add src", {"src/app.py": "print('hi')\n"})
    outcome, _ = await checkout(tmp_path / "w", tool, repourl=upstream.url, branch="main", mode="incremental")
    assert outcome.data == {"got_revision": new}
    assert (build / "src" / "app.py").exists() and (build / "junk.txt").exists()
    assert (build / "README.md").read_text() == "hello\n"  # tracked files are as committed

    # With full/clean the untracked file goes and the ignored one stays
    outcome, _ = await checkout(tmp_path / "w", tool, repourl=upstream.url, branch="main", method="clean")
    assert outcome.rc == 0
    assert not (build / "junk.txt").exists() and (build / "cache" / "module.pyc").exists()

    # With full/fresh both go; tracked files stay
    outcome, _ = await checkout(tmp_path / "w", tool, repourl=upstream.url, branch="main", mode="full")
    assert outcome.rc == 0
    assert not (build / "cache").exists()
    assert sorted(p.name for p in build.iterdir()) == [".git", ".gitignore", "README.md", "src"]


async def test_full_clobber_starts_over_and_files_deleted_upstream_go(tmp_path, upstream, tool):
    await checkout(tmp_path / "w", tool, repourl=upstream.url, branch="main")
    build = tmp_path / "w" / "unit" / "build"
    (build / "junk.txt").write_text("untracked")
    upstream.commit("Drop the readme", {"README.md": None})
    outcome, log = await checkout(tmp_path / "w", tool, repourl=upstream.url, branch="main", method="clobber")
    assert outcome.data == {"got_revision": upstream.head()}
    assert f"removing {build}" in log
    assert sorted(p.name for p in build.iterdir()) == [".git", ".gitignore"]


async def test_shallow_checkouts(tmp_path, upstream, tool):
    upstream.commit("Second", {"b.txt": "b\n"})
    outcome, _ = await checkout(tmp_path / "w", tool, repourl="file://" + upstream.url, branch="main", shallow=True)
    assert outcome.data == {"got_revision": upstream.head()}
    assert (tmp_path / "w" / "unit" / "build" / "b.txt").exists()


async def test_failures_say_what_went_wrong(tmp_path, upstream, tool):
    outcome, _ = await checkout(tmp_path / "w", tool, repourl=upstream.url, revision="0123456789" * 4)
    assert outcome.rc not in (0, None) and outcome.message == f"revision {'0123456789' * 4} is not in {upstream.url}"
    assert outcome.data == {}

    outcome, _ = await checkout(tmp_path / "w", tool, repourl=str(tmp_path / "nowhere"), branch="main")
    assert outcome.rc != 0 and str(tmp_path / "nowhere") in outcome.message

    outcome, _ = await checkout(tmp_path / "w", tool, repourl=upstream.url, branch="no-such-branch")
    assert outcome.rc != 0 and "no-such-branch" in outcome.message


async def test_bad_arguments_are_refused(tmp_path):
    for args, message in [
        ({"repourl": ""}, "needs a repository URL"),
        ({"repourl": "--upload-pack=evil"}, "needs a repository URL"),
        ({"repourl": "/r", "mode": "sideways"}, "mode must be one of"),
        ({"repourl": "/r", "mode": "incremental", "method": "clobber"}, "applies to mode 'full' only"),
        ({"repourl": "/r", "branch": "-x"}, "branch must be a name"),
        ({"repourl": "/r", "workdir": "../../escape"}, "outside the worker's basedir"),
        ({"repourl": "/r", "merge": True}, "merge must be true .with a branch"),
        ({"repourl": "/r", "branch": "refs/pull/1/merge", "merge": "yes"}, "merge must be true"),
    ]:
        with pytest.raises(CommandError, match=message):
            await checkout(tmp_path / "w", "git", **args)
    assert COMMANDS["git"] is GitCommand


@pytest.mark.parametrize("refs", ["refs/pull", "refs/merge-requests"])
async def test_a_pull_requests_head_ref_is_fetched_and_its_revision_checked_out_detached(
    tmp_path, upstream, tool, refs
):
    # Given a server that publishes a pull request at refs/pull/7/head only (GitLab: refs/merge-requests/7/head)
    hosting = Hosting(tmp_path / "server.git", upstream, 7, refs=refs)

    # When its build checks out the ref at the head revision
    outcome, log = await checkout(
        tmp_path / "w", tool, repourl=hosting.server.url, branch=f"{refs}/7/head", revision=hosting.head
    )

    # Then that very commit is checked out, detached, and no branch named after the ref is made
    assert outcome == Outcome(0, None, "", {"got_revision": hosting.head})
    build = GitRepo.at(tmp_path / "w" / "unit" / "build")
    assert (build.path / "feature.txt").exists() and not (build.path / "main.txt").exists()
    assert build.git("rev-parse", "--symbolic-full-name", "HEAD") == "HEAD"
    assert build.git("for-each-ref", "refs/heads") == ""
    assert f"{refs}/7/head" in log


async def test_the_merge_ref_is_checked_out_when_it_merges_the_revision_asked_for(tmp_path, upstream, tool):
    hosting = Hosting(tmp_path / "server.git", upstream, 7)
    args = {"repourl": hosting.server.url, "branch": "refs/pull/7/merge", "merge": True}

    # The merge of the head into main: both sides' files
    outcome, _ = await checkout(tmp_path / "w", tool, revision=hosting.head, **args)
    assert outcome == Outcome(0, None, "", {"got_revision": hosting.merge})
    build = tmp_path / "w" / "unit" / "build"
    assert (build / "feature.txt").exists() and (build / "main.txt").exists()

    # When the pull request moves on, a build still waiting for its old head fails, saying why
    old = hosting.head
    upstream.commit("Unrelated", {"other.txt": "x\n"})  # main moves on, and so does the feature
    upstream.checkout("feature")
    new = upstream.commit("More of the feature", {"feature.txt": "newer\n"})
    upstream.checkout("main")
    hosting.publish()
    outcome, _ = await checkout(tmp_path / "w", tool, revision=old, **args)
    assert outcome.rc not in (0, None) and outcome.data == {}
    assert outcome.message == (
        f"refs/pull/7/merge of {hosting.server.url} merges {new} now, not {old}: the pull request moved on since "
        "this build was asked for; a build of its new head checks that out"
    )

    # A pull request without a merge (conflicts) says so
    hosting.server.git("update-ref", "-d", "refs/pull/7/merge")
    outcome, _ = await checkout(tmp_path / "w2", tool, revision=new, **args)
    assert outcome.rc not in (0, None) and "the server has no merge for it" in outcome.message


async def test_a_force_pushed_head_fails_the_old_build_with_a_clear_message(tmp_path, upstream, tool):
    # Given a pull request whose head was force-pushed, its old commit gone from the server
    hosting = Hosting(tmp_path / "server.git", upstream, 7)
    old = hosting.head
    new = hosting.force_push()
    with pytest.raises(AssertionError):
        hosting.server.git("cat-file", "-e", old)

    # When the build of the old head runs (on a worker that never had it)
    outcome, _ = await checkout(
        tmp_path / "w", tool, repourl=hosting.server.url, branch="refs/pull/7/head", revision=old
    )

    # Then it fails, saying the revision is gone and where the pull request is now
    assert outcome.rc not in (0, None) and outcome.data == {}
    assert outcome.message == (
        f"revision {old} is not in {hosting.server.url}: refs/pull/7/head is at {new} there now (it was "
        "force-pushed, or rewritten, since this build was asked for, and a build of the new head checks that "
        "out; or the revision is another repository's)"
    )
    # While the build of the new head checks it out
    outcome, _ = await checkout(
        tmp_path / "w", tool, repourl=hosting.server.url, branch="refs/pull/7/head", revision=new
    )
    assert outcome.data == {"got_revision": new}
