"""``flowbot-worker``: run a worker from flags, or create a worker directory and start it.

    flowbot-worker --master tcp://127.0.0.1:9989 --name w1 --secret change-me --basedir ./w1
    flowbot-worker create-worker ./w1 --master tcp://ci:9989 --name w1 --secret-file ./secret
    flowbot-worker start ./w1

The secret comes from ``--secret``, ``--secret-file`` or ``FLOWBOT_WORKER_SECRET``, in that order;
:func:`flowbot_worker.launch.command` writes the command line that runs a worker, for those that
start one.
A master that refuses the worker for good (a wrong secret, a name its pipeline does not declare)
makes it exit with code 3 (:data:`EXIT_REFUSED`), unless ``--keep-trying`` is given.
For a master that encrypts the link, ``flowbot-worker create-key DIR --name w1`` makes the worker's
key pair, and ``--master-key`` (the master's public key, or its ``master.key`` file) with
``--key-file`` (``DIR/w1.key_secret``) make the worker encrypt too; ``FLOWBOT_WORKER_MASTER_KEY``
and ``FLOWBOT_WORKER_KEY_FILE`` stand in for them (``FLOWBOT_WORKER_KEY``, the secret key itself, for
the file: a master that starts workers on demand hands each a key pair of its own that way).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

from .curve import ClientKeys, create_key, key_pair, load_key_pair, public_key
from .defaults import MASTER_ENDPOINT
from .errors import KeyFileError
from .launch import SECRET_VARIABLE
from .worker import Worker

CONFIG_FILE = "worker.json"
#: The exit code after a refusal that trying again would not change.
EXIT_REFUSED = 3


def endpoint(address: str) -> str:
    """The master's ZeroMQ endpoint from ``--master``: ``tcp://HOST:PORT``, or ``HOST:PORT`` for it.

    Raises:
        ValueError: it is no endpoint a worker can dial, with what to give instead.
    """
    address = address.strip()
    if "://" not in address:
        address = "tcp://" + address
    scheme, _, rest = address.partition("://")
    if scheme in ("http", "https"):
        raise ValueError(
            f"{address} is the master's HTTP address; a worker dials its worker port, e.g. tcp://HOST:9989"
        )
    if scheme == "ipc" and rest:
        return address
    host, _, port = rest.rpartition(":")
    if scheme != "tcp" or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not the master's endpoint: give tcp://HOST:PORT (or HOST:PORT)")
    return address


def _secret(args: argparse.Namespace) -> str:
    if args.secret is not None:
        return args.secret
    if args.secret_file:
        try:
            return Path(args.secret_file).read_text().strip()
        except OSError as exc:
            sys.exit(f"flowbot-worker: cannot read the secret file: {exc}")
    if SECRET_VARIABLE in os.environ:
        return os.environ[SECRET_VARIABLE]
    sys.exit("flowbot-worker: no secret: give --secret, --secret-file or FLOWBOT_WORKER_SECRET")


def _curve(master_key: str | None, key_file: str | None, key: str | None = None) -> ClientKeys | None:
    """The worker's CURVE keys, or None when it does not encrypt; exits on a bad key.

    ``key`` is the worker's secret key itself (``FLOWBOT_WORKER_KEY``), as a master that starts
    workers on demand hands one to each, in place of a key file.
    """
    if not master_key and not key_file and not key:
        return None
    if not (master_key and (key_file or key)):
        sys.exit("flowbot-worker: to encrypt the link, give both --master-key and --key-file")
    try:
        return ClientKeys(key_pair(key) if key else load_key_pair(key_file), public_key(master_key))
    except KeyFileError as exc:
        sys.exit(f"flowbot-worker: {exc}")


def _key_options(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The master's public key (or its file) and the worker's key file, from flags or environment."""
    return (
        args.master_key or os.environ.get("FLOWBOT_WORKER_MASTER_KEY"),
        args.key_file or os.environ.get("FLOWBOT_WORKER_KEY_FILE"),
    )


def run_worker(
    master: str,
    name: str,
    secret: str,
    basedir: str | Path,
    *,
    exit_with_parent: bool = False,
    curve: ClientKeys | None = None,
    keep_trying: bool = False,
) -> None:
    """Run a worker in the foreground until SIGINT or SIGTERM (or its parent's end); exits with
    :data:`EXIT_REFUSED` when the master refuses it for good."""
    try:
        master = endpoint(master)
    except ValueError as exc:
        sys.exit(f"flowbot-worker: {exc}")

    async def main() -> str | None:
        worker = Worker(
            master, name, secret, basedir, exit_with_parent=exit_with_parent, curve=curve, keep_trying=keep_trying
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()
        return worker.refused

    refused = asyncio.run(main())
    if refused is not None:
        print(
            f"flowbot-worker: the master at {master} refused worker {name!r}: {refused}\n"
            "it will refuse it again until its pipeline or this worker's settings change "
            "(--keep-trying to try again all the same)",
            file=sys.stderr,
        )
        sys.exit(EXIT_REFUSED)


def _create(args: argparse.Namespace) -> None:
    basedir = Path(args.basedir)
    basedir.mkdir(parents=True, exist_ok=True)
    try:
        master = endpoint(args.master)
    except ValueError as exc:
        sys.exit(f"flowbot-worker: {exc}")
    config = {"master": master, "name": args.name, "secret": _secret(args)}
    master_key, key_file = _key_options(args)
    curve = _curve(master_key, key_file)
    if curve is not None:
        config.update(master_key=curve.master, key_file=str(Path(key_file).resolve()))
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
    run_worker(
        master,
        name,
        secret,
        args.basedir,
        curve=_curve(config.get("master_key"), config.get("key_file")),
        keep_trying=args.keep_trying,
    )


def _create_key(args: argparse.Namespace) -> None:
    try:
        public, secret = create_key(args.directory, args.name)
    except KeyFileError as exc:
        sys.exit(f"flowbot-worker create-key: {exc}")
    key = load_key_pair(secret).public
    print(
        f"wrote {public} and {secret} (keep that one private)\n"
        f"public key: {key}\n"
        f"declare it in the master's pipeline: Worker({args.name!r}, secret=..., public_key={key!r})\n"
        f"run the worker with: --key-file {shlex.quote(str(secret))} --master-key <the master's key or master.key>"
    )


def _identity_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--master",
        default=MASTER_ENDPOINT,
        help="the master's ZeroMQ endpoint, tcp://HOST:PORT or HOST:PORT (default: %(default)s)",
    )
    p.add_argument("--name", help="this worker's name, as the master's pipeline declares it")
    p.add_argument("--secret", help="shared secret (prefer --secret-file or FLOWBOT_WORKER_SECRET)")
    p.add_argument("--secret-file", help="file holding the shared secret")
    p.add_argument("--master-key", help="the master's CURVE public key, or its key file, to encrypt the link")
    p.add_argument("--key-file", help="this worker's CURVE secret key file (from create-key)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowbot-worker", description="Run a flowbot worker.")
    _identity_options(p)
    p.add_argument("--basedir", help="directory where builds run")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--exit-with-parent", action="store_true", help="stop when the process that started it ends")
    p.add_argument(
        "--keep-trying",
        action="store_true",
        help=f"after a refusal that will not change (wrong secret, unknown name), try again rather than exit "
        f"with code {EXIT_REFUSED}",
    )
    sub = p.add_subparsers(dest="command")
    create = sub.add_parser("create-worker", help="write a worker directory")
    create.add_argument("basedir")
    _identity_options(create)
    start = sub.add_parser("start", help="start the worker of a worker directory")
    start.add_argument("basedir")
    start.add_argument(
        "--keep-trying", action="store_true", help="after a refusal that will not change, try again rather than exit"
    )
    key = sub.add_parser("create-key", help="make a CURVE key pair for encrypting the link")
    key.add_argument("directory")
    key.add_argument(
        "--name", default="worker", help="the key files' name: NAME.key and NAME.key_secret (default: %(default)s)"
    )
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
    elif args.command == "create-key":
        _create_key(args)
    else:
        if not args.name or not args.basedir:
            sys.exit("flowbot-worker: --name and --basedir are required (or use create-worker/start)")
        run_worker(
            args.master,
            args.name,
            _secret(args),
            args.basedir,
            exit_with_parent=args.exit_with_parent,
            curve=_curve(*_key_options(args), key=os.environ.get("FLOWBOT_WORKER_KEY")),
            keep_trying=args.keep_trying,
        )


if __name__ == "__main__":
    main()
