"""``flowbot-worker``: run a worker from flags, or create a worker directory and start it.

    flowbot-worker --master tcp://127.0.0.1:9989 --name w1 --secret change-me --basedir ./w1
    flowbot-worker create-worker ./w1 --master tcp://ci:9989 --name w1 --secret-file ./secret
    flowbot-worker start ./w1

The secret comes from ``--secret``, ``--secret-file`` or ``FLOWBOT_WORKER_SECRET``, in that order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from .defaults import MASTER_ENDPOINT
from .worker import Worker

CONFIG_FILE = "worker.json"


def _secret(args: argparse.Namespace) -> str:
    if args.secret is not None:
        return args.secret
    if args.secret_file:
        try:
            return Path(args.secret_file).read_text().strip()
        except OSError as exc:
            sys.exit(f"flowbot-worker: cannot read the secret file: {exc}")
    if "FLOWBOT_WORKER_SECRET" in os.environ:
        return os.environ["FLOWBOT_WORKER_SECRET"]
    sys.exit("flowbot-worker: no secret: give --secret, --secret-file or FLOWBOT_WORKER_SECRET")


def run_worker(master: str, name: str, secret: str, basedir: str | Path, *, exit_with_parent: bool = False) -> None:
    """Run a worker in the foreground until SIGINT or SIGTERM (or its parent's end)."""

    async def main() -> None:
        worker = Worker(master, name, secret, basedir, exit_with_parent=exit_with_parent)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())


def _create(args: argparse.Namespace) -> None:
    basedir = Path(args.basedir)
    basedir.mkdir(parents=True, exist_ok=True)
    config = {"master": args.master, "name": args.name, "secret": _secret(args)}
    path = basedir / CONFIG_FILE
    path.touch(mode=0o600)
    path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"created worker {args.name!r} in {basedir}; start it with: flowbot-worker start {basedir}")


def _start(args: argparse.Namespace) -> None:
    path = Path(args.basedir) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
        master, name, secret = config["master"], config["name"], config["secret"]
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"flowbot-worker: {path}: not a worker directory ({exc})")
    run_worker(master, name, secret, args.basedir)


def _identity_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--master", default=MASTER_ENDPOINT, help="the master's ZeroMQ endpoint")
    p.add_argument("--name", help="this worker's name, as the master's pipeline declares it")
    p.add_argument("--secret", help="shared secret (prefer --secret-file or FLOWBOT_WORKER_SECRET)")
    p.add_argument("--secret-file", help="file holding the shared secret")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowbot-worker", description="Run a flowbot worker.")
    _identity_options(p)
    p.add_argument("--basedir", help="directory where builds run")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--exit-with-parent", action="store_true", help="stop when the process that started it ends")
    sub = p.add_subparsers(dest="command")
    create = sub.add_parser("create-worker", help="write a worker directory")
    create.add_argument("basedir")
    _identity_options(create)
    start = sub.add_parser("start", help="start the worker of a worker directory")
    start.add_argument("basedir")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "create-worker":
        if not args.name:
            sys.exit("flowbot-worker create-worker: --name is required")
        _create(args)
    elif args.command == "start":
        _start(args)
    else:
        if not args.name or not args.basedir:
            sys.exit("flowbot-worker: --name and --basedir are required (or use create-worker/start)")
        run_worker(args.master, args.name, _secret(args), args.basedir, exit_with_parent=args.exit_with_parent)


if __name__ == "__main__":
    main()
