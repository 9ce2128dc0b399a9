"""The IRC bot's answers, who may force, what it refuses to be configured with, and what it sends."""

from __future__ import annotations

import asyncio
import time

import pytest

from flowbot import IRC, ConfigError
from flowbot.errors import NotFound
from flowbot.records import Build
from flowbot.reporters.controls import BuilderState
from flowbot.reporters.irc import _Link
from flowbot.results import Result


class FakeControls:
    """What a master gives the bot, with two builders; it records the builds forced."""

    def __init__(self):
        self.forced: list[tuple[str, str, str]] = []
        done = Build(1, "unit", 7, "w1", time.time() - 70, time.time() - 60, Result.FAILURE, "main", "1a2b3c4d5e6f")
        self.builds = {"unit": done, "docs": None}

    async def states(self):
        return [
            BuilderState("unit", running=1, pending=2, last=self.builds["unit"]),
            BuilderState("docs", running=0, pending=0, last=None),
        ]

    async def last_build(self, builder):
        if builder not in self.builds:
            raise NotFound(f"no builder named {builder!r}")
        return self.builds[builder]

    async def force(self, builder, *, reason, owner):
        if builder not in self.builds:
            raise NotFound(f"no builder named {builder!r}")
        self.forced.append((builder, reason, owner))
        return [41]


async def test_the_bot_answers_status_last_force_and_help():
    bot, controls = IRC("irc.example.org", channels=["#ci"], allow_force=["alice"]), FakeControls()
    assert await bot.answer(controls, "bob!b@h", "status") == [
        "unit: 1 running, 2 waiting; last FAILURE #7 1 min 0 s ago",
        "docs: idle; no builds yet",
    ]
    assert await bot.answer(controls, "bob!b@h", "status docs") == ["docs: idle; no builds yet"]
    assert await bot.answer(controls, "bob!b@h", "status nope") == ["no builder named 'nope'"]
    (last,) = await bot.answer(controls, "bob!b@h", "last unit")
    assert last.startswith("FAILURE: unit #7 on main (1a2b3c4d5e), 1 min 0 s ago, took 10.0 s")
    assert await bot.answer(controls, "bob!b@h", "last docs") == ["docs has no finished build yet"]
    assert await bot.answer(controls, "alice!a@h", "force unit ship it") == ["forced unit: build request 41"]
    assert controls.forced == [("unit", "ship it", "alice on IRC")]
    assert await bot.answer(controls, "alice!a@h", "force nope") == ["no builder named 'nope'"]
    assert await bot.answer(controls, "bob!b@h", "force unit") == [
        "bob may not force builds here (the pipeline's IRC(allow_force=...) says who may)"
    ]
    assert len(controls.forced) == 1
    for nonsense in ("", "dance", "last", "force"):
        assert (await bot.answer(controls, "bob!b@h", nonsense))[0].startswith("commands: status")


def test_who_may_force_by_nick_or_by_mask():
    bot = IRC("irc.example.org", allow_force=["Alice", "bob!*@trusted.example.org"])
    assert bot.may_force("alice!a@anywhere") and bot.may_force("ALICE!x@y")
    assert bot.may_force("bob!bob@trusted.example.org")
    assert not bot.may_force("bob!bob@elsewhere.example.org")
    assert not bot.may_force("alicia!a@h") and not bot.may_force("mallory!m@trusted.example.org")


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"host": ""}, "host must be the IRC server's name"),
        ({"nick": "9lives"}, "nick '9lives' is not one IRC takes"),
        ({"nick": "two words"}, "nick 'two words' is not one IRC takes"),
        ({"channels": ["ci"]}, "channel 'ci' is not an IRC channel name"),
        ({"channels": ["#a,#b"]}, "channel '#a,#b' is not an IRC channel name"),
        ({"port": 0}, "port must be a TCP port number"),
        ({"allow_force": ["alice\nbob"]}, "allow_force takes nicks or masks"),
        ({"ssl_context": object()}, "ssl_context is given but tls is off"),
    ],
)
def test_a_bot_irc_would_refuse_fails_with_file_and_line(arguments, problem):
    with pytest.raises(ConfigError) as caught:
        IRC(**{"host": "irc.example.org", **arguments})
    assert problem in str(caught.value)
    assert caught.value.filename == __file__ and caught.value.lineno is not None


async def test_what_the_bot_sends_is_one_line_whatever_a_branch_holds():
    # Given a server that records the bytes it gets
    received = bytearray()
    done = asyncio.Event()

    async def record(reader, writer):
        received.extend(await reader.read())
        writer.close()
        await writer.wait_closed()
        done.set()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    link = _Link(reader, writer)

    # When the bot announces a build whose branch holds a line break and an IRC command
    await link.say("#ci", "FAILURE: unit #1 on evil\r\nPRIVMSG #other :gotcha\nQUIT")
    await link.say("#ci", "x" * 1000)
    await link.close()
    await asyncio.wait_for(done.wait(), 5)
    server.close()
    await server.wait_closed()

    # Then the server got exactly one line per message, the second cut to what one line holds
    lines = bytes(received).split(b"\r\n")
    assert lines[0] == b"PRIVMSG #ci :FAILURE: unit #1 on evil PRIVMSG #other :gotcha QUIT"
    assert lines[1].startswith(b"PRIVMSG #ci xxx") and lines[1].endswith("…".encode()) and len(lines[1]) < 512
    assert lines[2:] == [b""]
