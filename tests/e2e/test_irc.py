"""The IRC bot against a real IRC server (ngircd): it announces builds and answers people."""

from __future__ import annotations

import ssl

import trustme

from ..irc_server import IrcPerson
from ..support import finished_builds

PIPELINE = """\
import ssl
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, IRC

pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["pass", "fail"])],
    builders=[
        Builder("pass", workers=["w1"], steps=[Shell("echo fine", name="test")]),
        Builder("fail", workers=["w1"], steps=[Shell("exit 1", name="compile")]),
    ],
    reporters=[IRC({irc})],
    url="https://ci.example.com/",
)
"""


def bot_joined(person: IrcPerson, channel: str, nick: str = "flowbot") -> None:
    """Wait until ``nick`` is in ``channel``: it joins after ``person``, or was there when they joined."""
    person.wait(rf"^:{nick}!\S+ JOIN :?{channel}|^:\S+ 353 \S+ [=*@] {channel} :(.* )?[@+]?{nick}( |$)", 30)


def test_the_bot_announces_builds_and_answers_status_last_and_force(irc_server, master_factory, worker_factory):
    # Given a channel with alice in it, and a master whose bot lets alice alone force builds
    server = irc_server()
    alice = IrcPerson(server, "alice")
    alice.join("#ci")
    irc = f"'127.0.0.1', {server.port}, 'flowbot', ['#ci'], allow_force=['alice']"
    master = master_factory(PIPELINE.format(irc=irc))
    worker_factory(master, "w1", "s")
    bot_joined(alice, "#ci")

    # When alice asks the bot, by name, to force a build
    alice.say("#ci", "flowbot: force pass the release candidate")

    # Then it says so, the build runs, and its end is announced in the channel with its page
    assert "alice: forced pass: build request" in alice.wait(r"PRIVMSG #ci :alice: forced pass")
    (build,) = finished_builds(master.client, 1)
    assert build["result"] == "SUCCESS"
    announced = alice.wait(r"PRIVMSG #ci :SUCCESS: pass #1")
    assert announced.endswith(f"https://ci.example.com/#/builds/{build['id']}")
    forced = master.client.build(build["id"])
    assert forced["reason"] == "the release candidate (forced by alice on IRC)"

    # When she asks for the last build and the status
    mark = alice.mark()
    alice.say("#ci", "flowbot, last pass")
    last = alice.wait(r"PRIVMSG #ci :alice: SUCCESS: pass #1", since=mark)
    assert " ago, took " in last and last.endswith(f"#/builds/{build['id']}")
    alice.say("#ci", "flowbot: status")
    assert alice.wait(r"PRIVMSG #ci :alice: pass: idle; last SUCCESS #1 ", since=mark)
    assert alice.wait(r"PRIVMSG #ci :alice: fail: idle; no builds yet", since=mark)

    # Then mallory, whom the pipeline does not list, is refused, and no build is asked for
    mallory = IrcPerson(server, "mallory")
    mallory.join("#ci")
    mallory.say("#ci", "flowbot: force fail")
    assert mallory.wait(r"PRIVMSG #ci :mallory: mallory may not force builds here")
    assert master.client.builds(builder="fail") == []

    # And a private message is answered privately; an unknown command gets the help
    mallory.say("flowbot", "last nosuch")
    assert mallory.wait(r"PRIVMSG mallory :no builder named 'nosuch'")
    mallory.say("flowbot", "dance")
    assert mallory.wait(r"PRIVMSG mallory :commands: status \[BUILDER\], last BUILDER, force BUILDER")
    # Talk in the channel that is not to the bot gets no answer
    mark = alice.mark()
    alice.say("#ci", "status of the coffee machine?")
    alice.say("#ci", "flowbot: last fail")
    alice.wait(r"PRIVMSG #ci :alice: fail has no finished build yet", since=mark)
    assert not alice.said(r"PRIVMSG #ci :alice: commands", since=mark)


def test_the_bot_speaks_tls_and_comes_back_when_the_server_restarts(
    irc_server, master_factory, worker_factory, tmp_path
):
    # Given an IRC server with a TLS port whose certificate the test's CA signed
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    pem = tmp_path / "server.pem"
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    pem.write_bytes(leaf.private_key_pem.bytes() + b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    pem.chmod(0o644)
    server = irc_server(certificate=pem)
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    bob = IrcPerson(server, "bob", context=context)
    bob.join("#builds")
    irc = (
        f"'localhost', {server.tls_port}, 'ci-bot', ['#builds'], tls=True, "
        f"ssl_context=ssl.create_default_context(cafile={str(tmp_path / 'ca.pem')!r}), mode='failing'"
    )
    master = master_factory(PIPELINE.format(irc=irc))
    worker_factory(master, "w1", "s")
    bot_joined(bob, "#builds", "ci-bot")

    # When builds run, only the failing one is announced (its mode), over TLS
    master.client.force("pass")
    master.client.force("fail")
    finished_builds(master.client, 2)
    assert bob.wait(r"PRIVMSG #builds :FAILURE: fail #1")
    assert not bob.said(r"PRIVMSG #builds :SUCCESS")

    # When the server restarts, the bot dials again and announces the next failure
    server.stop()
    server.start()
    bob = IrcPerson(server, "bob", context=context)
    bob.join("#builds")
    bot_joined(bob, "#builds", "ci-bot")
    master.client.force("fail")
    finished_builds(master.client, 3)
    assert bob.wait(r"PRIVMSG #builds :FAILURE: fail #2")
    assert "IRC localhost" in master.log() and "the connection dropped" in master.log()
