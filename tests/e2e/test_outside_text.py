"""Text from outside that no database can keep: a lone surrogate, a NUL character.

A request body holding one is refused (400) with the field it is in, before anything is stored; text
that nobody can send again (a commit a poller reads, a worker's message) is kept with U+FFFD in its
place. Both on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json

from flowbot_worker import protocol

import flowbot
from flowbot import Builder, ForceScheduler, Git, Pipeline, Shell, Trigger, Triggerable, Worker
from flowbot.record_json import build_json

from ..gitrepos import GitRepo
from ..support import wait_for
from .fake_worker import FakeWorker
from .test_webhooks import post

PIPELINE = """\
from flowbot import (AnyBranchScheduler, Builder, ForceScheduler, GitHubHook, JsonHook, Pipeline, Shell,
                     StringParameter, Worker)
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    sources=[JsonHook(), GitHubHook()],
    schedulers=[AnyBranchScheduler("on-change", builders=["unit"]),
                ForceScheduler("force", builders=["unit"], params=[StringParameter("flavour")])],
    builders=[Builder("unit", workers=["w1"], steps=[Shell("true")])],
)
"""

GITHUB_PUSH = {
    "ref": "refs/heads/main",
    "before": "0" * 40,
    "after": "a" * 40,
    "repository": {"html_url": "https://github.com/o/r", "clone_url": "https://github.com/o/r.git"},
    "commits": [
        {
            "id": "a" * 40,
            "message": "fine",
            "timestamp": "2024-01-01T00:00:00Z",
            "url": "https://github.com/o/r/commit/aaaa",
            "author": {"name": "\ud800", "email": "a@example.org"},
            "added": [],
            "modified": ["x"],
            "removed": [],
        }
    ],
}


def test_a_lone_surrogate_in_a_body_is_refused_naming_its_field_on_either_database(master_factory, db_url):
    # Given a master on each database, with a JSON hook, a GitHub hook and a force form
    master = master_factory(PIPELINE, db=db_url)
    github = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    refused = [
        ("/api/changes", b'{"author": "\\ud800"}', {}, "author"),
        ("/api/changes", b'{"branch": "main", "properties": {"k": ["ok", "x\\udc80"]}}', {}, "properties.k[1]"),
        ("/api/changes", b'{"branch": "main", "properties": {"\\udfff": 1}}', {}, "a key of properties"),
        ("/hooks/changes", b'[{"branch": "main"}, {"comments": "\\ud800"}]', {}, "[1].comments"),
        ("/hooks/github", json.dumps(GITHUB_PUSH).encode(), github, "commits[0].author.name"),
        ("/api/builders/unit/force", b'{"reason": "\\ud800"}', {}, "reason"),
        ("/api/builders/unit/force", b'{"properties": {"flavour": "\\udbff"}}', {}, "properties.flavour"),
        ("/api/workers/w1/pause", b'{"reason": "\\ud800"}', {}, "reason"),
    ]
    for path, body, headers, field in refused:
        # When each is posted
        status, reply = post(master.url + path, body, headers)

        # Then it is a bad request that names the field and says why, never a server error
        assert status == 400, (path, body, reply)
        assert reply["error"].startswith(f"{field} holds a lone surrogate"), (path, reply)
    # ... NUL characters alike
    status, reply = post(master.url + "/api/changes", b'{"branch": "main", "comments": "a\\u0000b"}', {})
    assert (status, reply["error"]) == (400, "comments holds a NUL character, which PostgreSQL cannot store")

    # And nothing was stored, nor paused, while the same bodies without the stray character are taken
    assert master.client.request("GET", "/api/changes")["changes"] == []
    assert master.client.buildrequests() == []
    assert not master.client.workers()[0]["paused"]
    assert post(master.url + "/api/changes", b'{"author": "\\ud83d\\ude00 (a pair is fine)"}', {})[0] == 201
    assert master.client.request("GET", "/api/changes")["changes"][0]["author"] == "\U0001f600 (a pair is fine)"
    assert "Traceback" not in master.log()


def test_a_commit_in_a_codec_that_makes_unkeepable_text_is_kept_replaced(tmp_path, master_factory, db_url):
    # Given a repository whose commit declares an encoding that turns its bytes into a lone surrogate
    # and a NUL (anyone who can push to a polled repository can write such a commit)
    repo = GitRepo(tmp_path / "project")
    repo.commit("first")
    master = master_factory(
        f"""
        from flowbot import GitPoller, Pipeline, Worker
        pipeline = Pipeline(workers=[Worker("w1", secret="s")],
                            sources=[GitPoller({repo.url!r}, branches=["main"], poll_interval=0.2)])
        """,
        db=db_url,
    )
    wait_for(lambda: "first poll of" in master.log(), 30, "the first poll")

    # When the poller reads it
    repo.git("-c", "i18n.commitEncoding=unicode_escape", "commit", "-q", "--allow-empty", "-m", r"odd \ud800 \x00 end")
    repo.commit("after it")

    # Then the change is kept with U+FFFD for what no database can hold, and the next one follows it
    changes = wait_for(lambda: len(changes := master.client.request("GET", "/api/changes")["changes"]) == 2 and changes)
    assert [c["comments"] for c in reversed(changes)] == ["odd \ufffd \ufffd end", "after it"]
    assert "Traceback" not in master.log()


async def test_a_workers_message_no_database_can_keep_reaches_the_log_replaced(tmp_path, db_url):
    # Given a master on each database, and a worker whose command ends with a message that holds a
    # lone surrogate (a worker's path in bytes that are not UTF-8 comes across this way)
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["b"])],
        builders=[Builder("b", workers=["w1"], steps=[Shell("ls", name="list")])],
    )
    master = flowbot.Master(pipeline, db=db_url, basedir=tmp_path)
    await master.start()
    worker = FakeWorker(master.worker_endpoint, "w1", "s")
    try:
        assert (await worker.hello()).type == protocol.WELCOME
        await master.force("b")
        command = await worker.expect(protocol.START_COMMAND)

        # When it reports the command failed with that message
        await worker.finish(command.content["cmd_id"], rc=1, message="cannot open /srv/\udc80\udcff: denied \x00")

        # Then the build ends as its command did, and its log keeps the message with U+FFFD in place
        await master.wait_idle(timeout=30)
        (build,) = [build_json(b) for b in await master.store.builds.query(builder="b")]
        assert build["result"] == "FAILURE"
        lines = [line for _, line in await master.store.logs.lines(build["id"], 0)]
        assert "cannot open /srv/\ufffd\ufffd: denied \ufffd" in lines
    finally:
        worker.close()
        await master.stop()


async def test_what_a_worker_says_of_itself_and_its_checkout_is_kept_or_refused_on_either_database(tmp_path, db_url):
    # Given a master on each database, whose builder checks out and then triggers another
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["b"]), Triggerable("then", builders=["after"])],
        builders=[
            Builder("b", workers=["w1"], steps=[Git("https://example.org/r.git"), Trigger(schedulers=["then"])]),
            Builder("after", workers=["w1"], steps=[Shell("true")]),
        ],
    )
    master = flowbot.Master(pipeline, db=db_url, basedir=tmp_path)
    await master.start()
    worker = FakeWorker(master.worker_endpoint, "w1", "s")
    try:
        # When the worker describes itself with text no database keeps as text
        info = {"hostname": "box-\ud800", "note": "a\x00b"}
        assert (await worker.hello(info)).type == protocol.WELCOME

        # Then it is kept as given (the store holds it as JSON), and shown so
        for _ in range(100):  # written a moment after the welcome
            if (known := (await master.store.workers.all()).get("w1")) is not None and known.info:
                break
            await asyncio.sleep(0.05)
        assert (await master.store.workers.all())["w1"].info == info

        # And when it reports a checkout at a revision that is no text
        await master.force("b")
        checkout = await worker.expect(protocol.START_COMMAND)
        await worker.finish(checkout.content["cmd_id"], rc=0, data={"got_revision": "\ud800" + "a" * 39})

        # Then the checkout fails saying so, and nothing is triggered with that revision
        await master.wait_idle(timeout=30)
        (build,) = [build_json(b) for b in await master.store.builds.query(builder="b")]
        assert build["result"] == "FAILURE"
        lines = [line for _, line in await master.store.logs.lines(build["id"], 0)]
        assert any("got_revision" in line and "lone surrogate" in line for line in lines), lines
        assert [build_json(b) for b in await master.store.builds.query(builder="after")] == []
    finally:
        worker.close()
        await master.stop()
