"""The worker's journal: the commands it started, and the results the master has not acknowledged.

A worker keeps a finished command's result (and the output the master has not acknowledged) in
memory until the master acknowledges it, which carries it across a lost link. The journal carries
it across the worker's own death: a command is noted before its process starts, and its result,
with the unacknowledged tail of each stream, before the worker reports it. A worker started again
on the same base directory reads the journal back: it reports the results as a worker that never
died would (its hello lists them, and it sends them again once welcomed), and names the commands
an earlier process started and never saw end (the fence killed what was left of them). So a master
that still waits for a result gets it, and one whose worker restarted knows that a command the
journal does not name never started, and may start it again.

Each command is a small file of its own, replaced whole (written aside, then renamed), so a worker
killed while writing leaves the entry as it was. Nothing is synced to disk: the journal has to
outlive the worker's process, not its machine, whose crash takes the commands with it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .output import Tail

log = logging.getLogger("flowbot_worker")

#: The journal's directory, inside the worker's base directory.
DIRECTORY = ".flowbot-journal"


@dataclass(frozen=True, slots=True)
class Entry:
    """A command read back from the journal: its ``finished`` body, or None if it never ended
    while the worker that started it lived; and its output's tails."""

    cmd_id: str
    finished: dict[str, Any] | None
    output: dict[str, Tail]


class Journal:
    """The journal of the worker whose base directory is ``basedir``."""

    def __init__(self, basedir: Path):
        self.directory = basedir / DIRECTORY

    def started(self, cmd_id: str) -> None:
        """Note ``cmd_id`` before its process starts.

        Raises:
            OSError: it could not be noted; the command must not run (a worker restarted after a
                crash would not know it had started it).
        """
        self._write(cmd_id, {"cmd_id": cmd_id, "finished": None, "output": {}})

    def finished(self, cmd_id: str, finished: dict[str, Any], output: dict[str, Tail]) -> None:
        """Keep how ``cmd_id`` ended and its unacknowledged output, before the master hears of it."""
        tails = {
            stream: {"acked": t.acked, "lines": t.lines, "data": base64.b64encode(t.data).decode()}
            for stream, t in output.items()
        }
        try:
            self._write(cmd_id, {"cmd_id": cmd_id, "finished": finished, "output": tails})
        except OSError as exc:  # reported all the same: only the worker's death before the ack loses it
            log.error("cannot keep the result of command %s in the journal: %s", cmd_id, exc)

    def forget(self, cmd_id: str) -> None:
        """The master has the result of ``cmd_id``, or has given the command up."""
        with contextlib.suppress(FileNotFoundError):
            self._path(cmd_id).unlink()

    def entries(self) -> list[Entry]:
        """Every command the journal holds (an entry it cannot read is logged and dropped)."""
        if not self.directory.is_dir():
            return []
        entries = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                entries.append(_entry(json.loads(path.read_bytes())))
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.error("dropped an unreadable entry of the journal (%s): %s", path.name, exc)
                with contextlib.suppress(OSError):
                    path.unlink()
        return entries

    def _path(self, cmd_id: str) -> Path:
        # Command ids are the master's: named by a digest, any id makes a file name.
        return self.directory / f"{hashlib.sha256(cmd_id.encode()).hexdigest()[:32]}.json"

    def _write(self, cmd_id: str, entry: dict[str, Any]) -> None:
        path = self._path(cmd_id)
        aside = path.with_suffix(".tmp")
        self.directory.mkdir(exist_ok=True)
        aside.write_bytes(json.dumps(entry).encode())
        os.replace(aside, path)


def _entry(raw: dict[str, Any]) -> Entry:
    cmd_id, finished, output = raw["cmd_id"], raw["finished"], raw["output"]
    if type(cmd_id) is not str or not (finished is None or type(finished) is dict) or type(output) is not dict:
        raise ValueError("not a journal entry")
    tails = {}
    for stream, tail in output.items():
        acked, lines = tail["acked"], tail["lines"]
        if type(acked) is not int or acked < 0 or not (lines is None or type(lines) is int):
            raise ValueError(f"bad output offsets for stream {stream!r}")
        tails[stream] = Tail(acked, lines, base64.b64decode(tail["data"], validate=True))
    return Entry(cmd_id, finished, tails)
