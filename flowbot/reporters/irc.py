"""``IRC``: a bot that announces finished builds in channels and answers people who ask it.

The bot keeps one connection (plain or TLS) to an IRC server and dials again, waiting longer each
time, whenever it drops. People talk to it by name in a channel (``flowbot: status``) or in a
private message:

- ``status`` (or ``status BUILDER``): what each builder is doing and how its last build went;
- ``last BUILDER``: the last finished build, with its page;
- ``force BUILDER [REASON]``: force a build, for the nicks (or ``nick!user@host`` masks) that
  ``allow_force`` lists: anyone else is told no;
- ``help``.

Lines are read and written with asyncio streams; the IRC line grammar (prefix, parameters,
trailing text) is irctokens'. Everything the bot says is cut to one line, with control characters
made spaces, so a branch named with a newline cannot smuggle an IRC command into what it sends;
it sends at most :data:`~flowbot.defaults.IRC_BURST` lines at once, then one a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import re
import ssl
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import irctokens

from ..defaults import (
    IRC_BURST,
    IRC_CONNECT_TIMEOUT,
    IRC_LINE_INTERVAL,
    IRC_PORT,
    IRC_QUIET,
    IRC_RECONNECT,
    IRC_RECONNECT_MAX,
    IRC_STATUS_LINES,
)
from ..errors import ConfigError, FlowbotError, ReportError
from ..fields import FLAG, checked
from ..properties import Renderable
from ..records import Build
from .base import Reporter
from .controls import Controls
from .summary import headline, took

log = logging.getLogger(__name__)

_NICK = re.compile(r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,29}$")
_CHANNEL = re.compile(r"^[#&][^\s,\x00-\x1f]{1,49}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: The longest text one PRIVMSG carries: the server adds our prefix to a line of at most 512 bytes.
_TEXT_BYTES = 400

HELP = "commands: status [BUILDER], last BUILDER, force BUILDER [REASON], help"


class IRC(Reporter):
    """Announce finished builds in IRC channels, and answer ``status``, ``last`` and ``force``.

    Args:
        host, port: the IRC server (6697 is the usual port for TLS).
        nick: the bot's nick; if it is taken, ``_`` is added until one is free.
        channels: where to announce builds (and answer); it also answers private messages.
        tls: connect with TLS, checking the server's certificate against ``ssl_context`` (default:
            the system's trusted CAs).
        password: the server's password (``PASS``), best one of the pipeline's secrets,
            ``Interpolate("%(secret:irc_password)s")``.
        allow_force: who may force builds: nicks (``"alice"``), or masks ``"alice!*@ci.example.org"``
            (a bare nick is only as sure as the network's nick registration).
        name, builders, mode, attempts, backoff: as for :class:`~flowbot.reporters.Reporter`; the
            mode chooses which finished builds are announced.

    Raises:
        ConfigError: an empty host, a nick or channel IRC would refuse, or ``ssl_context`` without TLS.
    """

    @checked(tls=FLAG)
    def __init__(
        self,
        host: str,
        port: int = IRC_PORT,
        nick: str = "flowbot",
        channels: Iterable[str] = (),
        *,
        tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        password: str | Renderable | None = None,
        allow_force: Iterable[str] = (),
        name: str | None = None,
        builders: Iterable[str] | None = None,
        mode: str | Iterable[str] = "all",
        **retry: Any,
    ):
        super().__init__(name or f"IRC({host}:{port})", builders=builders, mode=mode, **retry)
        self.channels = [channels] if isinstance(channels, str) else list(channels)
        self.allow_force = [allow_force] if isinstance(allow_force, str) else list(allow_force)
        problems = []
        if not isinstance(host, str) or not host:
            problems.append(f"host must be the IRC server's name or address, not {host!r}")
        if not isinstance(port, int) or not 0 < port < 65536:
            problems.append(f"port must be a TCP port number, not {port!r}")
        if not isinstance(nick, str) or not _NICK.match(nick):
            problems.append(f"nick {nick!r} is not one IRC takes (a letter, then letters, digits or -[]\\`_^{{|}})")
        problems += [f"channel {c!r} is not an IRC channel name (#name)" for c in self.channels if not _is_channel(c)]
        problems += [f"allow_force takes nicks or masks, not {who!r}" for who in self.allow_force if not _is_mask(who)]
        if ssl_context is not None and not tls:
            problems.append("ssl_context is given but tls is off: set tls=True")
        if problems:
            raise ConfigError(f"IRC: {'; '.join(problems)}", *self._where())
        self.host = host
        self.port = port
        self.nick = nick
        self.tls = tls
        self.ssl_context = ssl_context
        self._password = self.credential("IRC password", password)
        #: The connection once the server has welcomed the bot, else None.
        self._link: _Link | None = None

    @property
    def reports_starts(self) -> bool:
        return False

    @property
    def connected(self) -> bool:
        """Whether the bot is connected and registered now."""
        return self._link is not None

    async def build_finished(self, build: Build) -> None:
        link = self._link
        if link is None:
            raise ReportError(f"not connected to the IRC server {self.host}:{self.port} yet")
        text = headline(build) + (f" {build.url}" if build.url else "")
        for channel in self.channels:
            await link.say(channel, text)

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close("flowbot is stopping")

    # -- the connection ---------------------------------------------------------------------------

    async def serve(self, controls: Controls) -> None:
        delay = IRC_RECONNECT
        while True:
            try:
                link = await asyncio.wait_for(self._connect(), IRC_CONNECT_TIMEOUT)
            except (OSError, TimeoutError, FlowbotError) as exc:
                log.warning("IRC %s:%d: cannot connect (%s); trying again in %.0f s", self.host, self.port, exc, delay)
            else:
                delay = IRC_RECONNECT
                try:
                    await self._converse(link, controls)
                except (OSError, ConnectionError, ValueError) as exc:
                    log.warning("IRC %s:%d: the connection dropped (%s)", self.host, self.port, exc)
                finally:
                    self._link = None
                    await link.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, IRC_RECONNECT_MAX)

    async def _connect(self) -> _Link:
        """Open the connection and register; returns it once the server has welcomed the bot."""
        context = (self.ssl_context or ssl.create_default_context()) if self.tls else None
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=context)
        link = _Link(reader, writer)
        try:
            password = self.render(self._password)
            if password:
                await link.send("PASS", password)
            nick = self.nick
            await link.send("NICK", nick)
            await link.send("USER", self.nick.lower(), "0", "*", "flowbot")
            while True:
                line = await link.read()
                if line.command == "PING":
                    await link.send("PONG", *line.params)
                elif line.command in ("432", "433", "436"):  # erroneous, taken, collided
                    nick = f"{nick}_"[:30]
                    await link.send("NICK", nick)
                elif line.command == "464":
                    raise ReportError("the IRC server refused the password")
                elif line.command == "ERROR":
                    raise ReportError(f"the IRC server closed the link: {' '.join(line.params)}")
                elif line.command == "001":
                    link.nick = line.params[0]
                    break
            if self.channels:
                await link.send("JOIN", ",".join(self.channels))
        except BaseException:
            await link.close()
            raise
        log.info("IRC %s:%d: connected as %s", self.host, self.port, link.nick)
        return link

    async def _converse(self, link: _Link, controls: Controls) -> None:
        """Answer the server and people until the connection ends."""
        self._link = link
        pinged = False
        while True:
            try:
                line = await link.read(IRC_QUIET)
            except TimeoutError:
                if pinged:
                    raise ConnectionError(f"no answer from the server in {2 * IRC_QUIET:.0f} s") from None
                await link.send("PING", "flowbot")
                pinged = True
                continue
            pinged = False
            if line.command == "PING":
                await link.send("PONG", *line.params)
            elif line.command == "ERROR":
                raise ConnectionError(" ".join(line.params))
            elif line.command == "KICK" and len(line.params) > 1 and line.params[1] == link.nick:
                await link.send("JOIN", line.params[0])
            elif line.command == "NICK" and line.source and line.hostmask.nickname == link.nick and line.params:
                link.nick = line.params[0]
            elif line.command in ("471", "473", "474", "475") and len(line.params) > 1:
                log.warning("IRC %s:%d: cannot join %s: %s", self.host, self.port, line.params[1], line.params[-1])
            elif line.command == "PRIVMSG" and line.source and len(line.params) == 2:
                await self._heard(link, controls, line.hostmask, *line.params)

    # -- people ------------------------------------------------------------------------------------

    async def _heard(self, link: _Link, controls: Controls, who: irctokens.Hostmask, target: str, text: str) -> None:
        """A message: answer it if it is to the bot (privately, or by name in a channel)."""
        if text.startswith("\x01"):
            return  # CTCP (ACTION, VERSION...): not a command
        private = not _is_channel(target)
        if private:
            command, reply_to, prefix = text, who.nickname, ""
        else:
            addressed = re.match(rf"^{re.escape(link.nick)}[:,]\s*(.*)$", text, re.IGNORECASE)
            if addressed is None:
                return
            command, reply_to, prefix = addressed.group(1), target, f"{who.nickname}: "
        for answer in await self.answer(controls, str(who), command):
            await link.say(reply_to, prefix + answer)

    async def answer(self, controls: Controls, who: str, command: str) -> list[str]:
        """What the bot says to ``command`` from ``who`` (``nick!user@host``): one line or more."""
        words = command.split()
        verb = words[0].lower() if words else "help"
        try:
            if verb == "status":
                return await _status(controls, words[1] if len(words) > 1 else None)
            if verb == "last" and len(words) > 1:
                return await _last(controls, words[1])
            if verb == "force" and len(words) > 1:
                nick = who.partition("!")[0]
                if not self.may_force(who):
                    return [f"{nick} may not force builds here (the pipeline's IRC(allow_force=...) says who may)"]
                ids = await controls.force(words[1], reason=" ".join(words[2:]), owner=f"{nick} on IRC")
                return [f"forced {words[1]}: build request {', '.join(map(str, ids))}"]
        except FlowbotError as exc:
            return [str(exc)]
        return [HELP]

    def may_force(self, who: str) -> bool:
        """Whether ``who`` (``nick!user@host``) is one ``allow_force`` lists."""
        nick = who.partition("!")[0].lower()
        for allowed in self.allow_force:
            if "!" in allowed or "@" in allowed:
                if fnmatch.fnmatchcase(who.lower(), allowed.lower()):
                    return True
            elif nick == allowed.lower():
                return True
        return False


async def _status(controls: Controls, builder: str | None) -> list[str]:
    states = await controls.states()
    if builder is not None:
        states = [s for s in states if s.name == builder]
        if not states:
            return [f"no builder named {builder!r}"]
    lines = []
    for state in states[:IRC_STATUS_LINES]:
        doing = []
        if state.running:
            doing.append(f"{state.running} running")
        if state.pending:
            doing.append(f"{state.pending} waiting")
        last = state.last
        if last is None:
            said = "no builds yet"
        elif last.result is None:
            said = f"#{last.number} running"
        else:
            said = f"last {last.result.name} #{last.number} {_ago(last.finished_at)}"
        lines.append(f"{state.name}: {', '.join(doing) or 'idle'}; {said}")
    if len(states) > IRC_STATUS_LINES:
        lines.append(f"... and {len(states) - IRC_STATUS_LINES} more builders (status BUILDER tells of one)")
    return lines or ["no builders"]


async def _last(controls: Controls, builder: str) -> list[str]:
    build = await controls.last_build(builder)
    if build is None:
        return [f"{builder} has no finished build yet"]
    when = f", {_ago(build.finished_at)}, took {took(build.duration)}"
    return [headline(build) + when + (f" {build.url}" if build.url else "")]


def _ago(when: float | None) -> str:
    if when is None:
        return ""
    return f"{took(max(0.0, time.time() - when))} ago"


def _is_channel(name: Any) -> bool:
    return isinstance(name, str) and bool(_CHANNEL.match(name))


def _is_mask(who: Any) -> bool:
    return isinstance(who, str) and bool(who) and not _CONTROL.search(who) and " " not in who


class _Link:
    """One connection to the server: lines in, lines out, paced."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.nick = ""
        self._sent: deque[float] = deque(maxlen=IRC_BURST)
        self._sending = asyncio.Lock()

    async def read(self, timeout: float | None = None) -> irctokens.Line:
        """The next line from the server (blank ones skipped).

        Raises:
            ConnectionError: the server closed the connection. TimeoutError: nothing came in time.
            ValueError: a line longer than any server sends.
        """
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                raise ConnectionError("the server closed the connection")
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                try:
                    return irctokens.tokenise(raw)
                except (ValueError, IndexError):
                    log.warning("IRC: skipped a line that is not IRC: %r", raw[:200])

    async def say(self, target: str, text: str) -> None:
        """``PRIVMSG target :text``, cut to what one line holds."""
        await self.send("PRIVMSG", target, _cut(_CONTROL.sub(" ", text), _TEXT_BYTES))

    async def send(self, command: str, *params: str) -> None:
        """One line, its parameters made single-line; waits its turn under the flood limit."""
        line = irctokens.build(command, [_CONTROL.sub(" ", p) for p in params]).format()
        async with self._sending:
            window = IRC_BURST * IRC_LINE_INTERVAL
            if len(self._sent) == IRC_BURST and (wait := self._sent[0] + window - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            self._sent.append(time.monotonic())
            self.writer.write(line.encode() + b"\r\n")
            await self.writer.drain()

    async def close(self, message: str | None = None) -> None:
        if self.writer.is_closing():
            return
        if message is not None:
            try:
                self.writer.write(irctokens.build("QUIT", [message]).format().encode() + b"\r\n")
                await asyncio.wait_for(self.writer.drain(), 2)
            except (OSError, TimeoutError):
                pass
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` bytes of UTF-8, ending in "…" when cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "…"
