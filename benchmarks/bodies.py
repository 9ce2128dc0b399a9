"""What reading and writing a message body costs, for the bodies on every build's path.

Each build sends a ``start_command``, some ``output``, a ``finished`` and their ``ack`` s; this
times, in process CPU (so other work on the machine counts for little), ``encode`` and ``decode``
of each of those bodies (:mod:`flowbot_worker.bodies`), and for scale the framing and signing of
an ``output`` message around them (:meth:`flowbot_worker.protocol.Channel.pack` and
:func:`~flowbot_worker.protocol.parse`). Best of five runs, in nanoseconds per message.

    python benchmarks/bodies.py
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable
from typing import Any

from flowbot_worker import protocol
from flowbot_worker.bodies import Finished, FinishedAck, Output, OutputAck, StartCommand, decode_ack

CMD_ID = "r12.b3.s1.c1"
DATA = b"x" * 100


def cases() -> list[tuple[str, Callable[[], Any]]]:
    start = StartCommand(CMD_ID, "shell", {"command": "make"}).encode()
    output = Output(CMD_ID, "stdout", 4096, DATA).encode()
    finished = Finished(CMD_ID, 0, None, "", 1.5, {}, {"stdout": 4096}).encode()
    output_ack = OutputAck(CMD_ID, {"stdout": 4096, "stderr": 10}).encode()
    finished_ack = FinishedAck([CMD_ID]).encode()
    channel = protocol.Channel(b"secret")
    channel.open()
    return [
        ("start_command encode", lambda: StartCommand(CMD_ID, "shell", {"command": "make"}).encode()),
        ("start_command decode", lambda: StartCommand.decode(start, ())),
        ("output encode", lambda: Output(CMD_ID, "stdout", 4096, DATA).encode()),
        ("output decode", lambda: Output.decode(output, (DATA,))),
        ("finished encode", lambda: Finished(CMD_ID, 0, None, "", 1.5, {}, {"stdout": 4096}).encode()),
        ("finished decode", lambda: Finished.decode(finished, ())),
        ("ack of output encode", lambda: OutputAck(CMD_ID, {"stdout": 4096, "stderr": 10}).encode()),
        ("ack of output decode", lambda: decode_ack(output_ack, ())),
        ("ack of finished encode", lambda: FinishedAck([CMD_ID]).encode()),
        ("ack of finished decode", lambda: decode_ack(finished_ack, ())),
        ("output pack and parse (framing)", lambda: protocol.parse(channel.pack(protocol.OUTPUT, output, (DATA,)))),
    ]


def main() -> None:
    for name, case in cases():
        number = 20_000 if "framing" in name else 200_000
        best = min(timeit.Timer(case, timer=time.process_time).repeat(5, number))
        print(f"{name:34s} {best / number * 1e9:8.0f} ns")


if __name__ == "__main__":
    main()
