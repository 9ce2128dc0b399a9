"""What waking a sleeping peer costs: a ZeroMQ round trip, warm and after a pause.

A master's idle build is a chain of messages, each to a process that was asleep. This ping-pongs
200-byte messages between a ROUTER (as the master has) and a DEALER in another process (as a
worker has), back to back and with a pause before each round trip, and prints the p50 of each:
the difference is the price of waking up on this machine.

    python benchmarks/wakeup.py
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time

import zmq
import zmq.asyncio

PAUSES = (0.0, 0.001, 0.05)


def echo(port: int) -> None:
    """The peer: send back every message until told to stop."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(f"tcp://127.0.0.1:{port}")
    sock.send(b"hello")
    while (frames := sock.recv_multipart()) != [b"stop"]:
        sock.send_multipart(frames)
    sock.close(linger=0)
    ctx.term()


async def round_trips(pause: float, count: int) -> list[float]:
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    peer = multiprocessing.Process(target=echo, args=(port,))
    peer.start()
    route, _ = await router.recv_multipart()
    times = []
    for _ in range(count):
        if pause:
            await asyncio.sleep(pause)
        start = time.perf_counter()
        await router.send_multipart([route, b"x" * 200])
        await router.recv_multipart()
        times.append((time.perf_counter() - start) * 1e6)
    await router.send_multipart([route, b"stop"])
    peer.join()
    router.close(linger=0)
    ctx.term()
    return times[len(times) // 10 :]  # without the warm-up


def main() -> None:
    for pause in PAUSES:
        times = asyncio.run(round_trips(pause, 2000 if pause < 0.01 else 200))
        print(f"pause {pause * 1000:4.0f} ms: round trip p50 {statistics.median(times):4.0f} us")


if __name__ == "__main__":
    main()
