"""A real IRC server for the tests (Debian's ngircd), and a person to talk on it.

:class:`IrcServer` starts ngircd on a free loopback port with a configuration file of its own (and a
TLS port with a certificate of the test's CA, when asked); :class:`IrcPerson` is a plain socket
client that registers, joins channels, says things and keeps every line it hears.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from .support import free_port, wait_for

NGIRCD = shutil.which("ngircd") or "/usr/sbin/ngircd"


class IrcServer:
    """ngircd on a free loopback port (``port``), and on ``tls_port`` with ``certificate`` when given
    (a PEM file holding the key and the certificate chain)."""

    def __init__(self, directory: Path, *, certificate: Path | None = None):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port() if certificate else None
        self.certificate = certificate
        self.config = directory / "ngircd.conf"
        self.log = directory / "ngircd.log"
        self.process: subprocess.Popen | None = None
        #: The people connected to it: they leave when it stops.
        self.people: list[IrcPerson] = []

    def start(self) -> IrcServer:
        root = os.geteuid() == 0
        lines = [
            "[Global]",
            "Name = irc.flowbot.test",
            "Info = flowbot's test server",
            "Listen = 127.0.0.1",
            f"Ports = {self.port}",
            "MotdPhrase = flowbot tests",
            *(["ServerUID = 65534", "ServerGID = 65534"] if root else []),
            "[Limits]",
            "MaxConnectionsIP = 0",
            "[Options]",
            "PAM = no",
            "Ident = no",
            "DNS = no",
        ]
        if self.certificate is not None:
            lines += [
                "[SSL]",
                f"CertFile = {self.certificate}",
                f"KeyFile = {self.certificate}",
                f"Ports = {self.tls_port}",
            ]
        self.config.write_text("\n".join(lines) + "\n")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [NGIRCD, "--nodaemon", "--config", str(self.config)], stdout=log, stderr=log
            )
        wait_for(lambda: self._answers(self.port) or self._died(), 20, "ngircd to listen")
        return self

    def _answers(self, port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    def _died(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"ngircd exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
        return False

    def stop(self) -> None:
        for person in self.people:
            person.close()
        self.people.clear()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class IrcPerson:
    """Someone on IRC, as a plain socket client: every line heard is kept in :attr:`heard`."""

    def __init__(self, server: IrcServer, nick: str, *, context: ssl.SSLContext | None = None):
        self.nick = nick
        port = server.tls_port if context is not None else server.port
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="localhost") if context is not None else raw
        self.sock.settimeout(None)
        self.heard: list[str] = []
        server.people.append(self)
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.send(f"NICK {nick}")
        self.send(f"USER {nick.lower()} 0 * :{nick}")
        self.wait(rf"^:\S+ 001 {re.escape(nick)} ")

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if not data:
                return
            buffer += data
            *lines, buffer = buffer.split(b"\r\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                if line.startswith("PING"):
                    self.send("PONG" + line[4:])
                with self._lock:
                    self.heard.append(line)

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def join(self, channel: str) -> None:
        self.send(f"JOIN {channel}")
        self.wait(rf"^:\S+ 366 {re.escape(self.nick)} {re.escape(channel)} ")

    def say(self, target: str, text: str) -> None:
        self.send(f"PRIVMSG {target} :{text}")

    def said(self, pattern: str, since: int = 0) -> list[str]:
        """The lines heard (from ``since`` on) that match ``pattern``."""
        with self._lock:
            return [line for line in self.heard[since:] if re.search(pattern, line)]

    def wait(self, pattern: str, timeout: float = 20, since: int = 0) -> str:
        """The first line (from ``since`` on) that matches ``pattern``, waiting for it."""
        return wait_for(lambda: next(iter(self.said(pattern, since)), None), timeout, f"IRC line {pattern!r}")

    def mark(self) -> int:
        """Where the lines heard end now (for ``since``)."""
        with self._lock:
            return len(self.heard)

    def close(self) -> None:
        if self.sock.fileno() == -1:
            return
        with contextlib.suppress(OSError):
            self.send("QUIT :bye")
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader
        self.sock.close()
        self._reader.join(5)
