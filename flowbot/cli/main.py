"""``flowbot``: the command line. Each command is a thin call into a library function."""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import sys
from typing import Any

from ..client import MASTER_VARIABLE, TOKEN_VARIABLE, Client
from ..defaults import HEARTBEAT_INTERVAL, HTTP_HOST, HTTP_PORT, MASTER_URL, WORKER_ENDPOINT
from ..errors import FlowbotError
from ..record_json import build_from_json, result_json, worker_from_json
from . import follow, run
from .table import ago, builds_table, duration, result, table


def _properties(pairs: list[str]) -> dict[str, str]:
    properties = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise FlowbotError(f"--property wants NAME=VALUE, not {pair!r}")
        properties[name] = value
    return properties


def status(client: Client, limit: int = 10, as_json: bool = False) -> str:
    """Builders, recent builds with results and durations, and workers, as text (or JSON)."""
    builders = client.builders()
    builds = client.builds(limit=limit)
    workers = client.workers()
    waiting = client.buildrequests(pending=True)
    if as_json:
        return _json({"builders": builders, "builds": builds, "workers": workers, "waiting": waiting})
    states = [worker_from_json(w) for w in workers]
    lines = [
        "Builders",
        table(
            ["NAME", "LAST BUILD", "RESULT", "DURATION", "PENDING", "RUNNING"],
            [
                [
                    b["name"],
                    last and f"{b['name']}/{last.number} (id {last.id})",
                    last and result(last),
                    last and duration(last),
                    b["pending"],
                    b["running"],
                ]
                for b in builders
                for last in [build_from_json(b["last_build"]) if b["last_build"] else None]
            ],
        ),
        "",
        f"Recent builds (newest first, at most {limit})",
        builds_table([build_from_json(b) for b in builds], ids=True) if builds else "(none yet)",
        "",
        "Workers",
        table(
            ["NAME", "STATE", "LAST SEEN", "HOST", "RUNNING"],
            [
                [
                    w.name,
                    w.standing,
                    ago(w.last_seen),
                    w.info.get("hostname"),
                    ", ".join(f"{r.builder} #{r.number}" for r in w.running) or None,
                ]
                for w in states
            ],
        ),
    ]
    waiting = [r for r in waiting if r.get("waiting")]
    if waiting:
        lines += [
            "",
            "Waiting requests (oldest first)",
            table(
                ["REQUEST", "BUILDER", "SINCE", "WHY"],
                [[r["id"], r["builder"], ago(r["submitted_at"]), r["waiting"]] for r in waiting],
            ),
        ]
    if any(w.launcher for w in states):
        lines += ["", "Instances of workers started on demand", instances(client)]
    return "\n".join(lines)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2)


def instances(client: Client, as_json: bool = False) -> str:
    """The instances of workers started on demand, and what each is doing."""
    listed = client.instances()
    if as_json:
        return _json(listed)
    if not listed:
        return "no instances of workers started on demand"
    return table(
        ["NAME", "WORKER", "KIND", "STATE", "SINCE", "BUILDS", "WHY"],
        [
            [i["name"], i["worker"], i["kind"], i["state"], ago(i["since"]), i["builds"], i["reason"] or None]
            for i in listed
        ],
    )


def worker(client: Client, args: argparse.Namespace) -> str:
    """Pause, unpause or shut down the worker ``args.name``; says what the master did."""
    if args.action == "pause":
        client.pause_worker(args.name, args.reason)
        return f"paused {args.name}: it takes no new builds until it is unpaused"
    if args.action == "unpause":
        client.unpause_worker(args.name)
        return f"unpaused {args.name}"
    client.shutdown_worker(args.name, graceful=not args.now)
    return f"shutting down {args.name} " + ("now" if args.now else "once its running builds have ended")


class _Help(argparse.HelpFormatter):
    """Help that shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, "", [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """A parser whose help shows defaults (its subcommands' parsers are of its class too)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, formatter_class=_Help, **kwargs)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="flowbot", description="flowbot: continuous integration as a dataflow graph.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("create-master", help="make a master directory with a sample pipeline.py")
    c.add_argument("basedir")
    c = sub.add_parser("create-key", help="make the master's CURVE key pair, to encrypt the worker link")
    c.add_argument("basedir")
    c = sub.add_parser("checkconfig", help="check a master directory's pipeline")
    c.add_argument("basedir")
    c = sub.add_parser("start", help="run a master (in the foreground, or in the background with --daemon)")
    c.add_argument("basedir")
    c.add_argument("--http", default=f"{HTTP_HOST}:{HTTP_PORT}", help="HOST:PORT for the HTTP API")
    c.add_argument("--zmq", default=WORKER_ENDPOINT, help="ZeroMQ endpoint workers dial into")
    c.add_argument("--db", help="database URL (default: sqlite:///BASEDIR/state.sqlite)")
    c.add_argument(
        "--heartbeat",
        type=float,
        default=HEARTBEAT_INTERVAL,
        help="seconds between heartbeats; a worker is lost after 3 missed",
    )
    c.add_argument("--daemon", action="store_true", help="run in the background; flowbot stop stops it")
    c.add_argument("--logfile", help="log to this file, not to stderr (with --daemon: default BASEDIR/master.log)")
    c = sub.add_parser("stop", help="stop the master running in a directory")
    c.add_argument("basedir")
    c = sub.add_parser("reconfig", help="apply an edited pipeline to the master running in a directory")
    c.add_argument("basedir")

    def remote(name: str, text: str, commands: Any = sub, reads: bool = False) -> argparse.ArgumentParser:
        c = commands.add_parser(name, help=text, description=text)
        c.add_argument(
            "--master",
            default=os.environ.get(MASTER_VARIABLE) or MASTER_URL,
            help=f"the master's HTTP address, http://HOST:PORT or HOST:PORT (${MASTER_VARIABLE} sets it)",
        )
        c.add_argument("--token", help=f"an API token for a master that limits control (default: ${TOKEN_VARIABLE})")
        if reads:
            c.add_argument("--json", action="store_true", help="print JSON, for scripts")
        return c

    build_help = "the build: its id (42) or BUILDER/NUMBER (unit/7), as flowbot status shows them"

    c = remote("sendchange", "send a change to the master")
    c.add_argument("--branch")
    c.add_argument("--revision")
    c.add_argument("--who", "--author", dest="author", default="")
    c.add_argument("--comments", default="")
    c.add_argument("--repository", default="")
    c.add_argument("--project", default="")
    c.add_argument("--property", action="append", default=[], metavar="NAME=VALUE")
    c.add_argument("files", nargs="*")
    c = remote("force", "force a build of a builder")
    c.add_argument("builder")
    c.add_argument("--reason", default="forced from the command line", help="why, shown with the build")
    c.add_argument("--branch", help="the branch to build (default: the scheduler's)")
    c.add_argument("--revision", help="the revision to build (default: the branch's newest)")
    c.add_argument("--property", action="append", default=[], metavar="NAME=VALUE", help="a build property")
    c.add_argument(
        "--wait", action="store_true", help="wait for the build; exit 0 if it ends SUCCESS or WARNINGS, else 1"
    )
    c.add_argument("--follow", action="store_true", help="as --wait, printing the build's log as it runs")
    c.add_argument("--json", action="store_true", help="with --wait: print JSON, for scripts")
    c = remote("stop-build", "stop a running build")
    c.add_argument("build", help=build_help)
    c.add_argument("--reason", default="stopped from the command line", help="why, shown in the build's log")
    c = remote("approve", "approve a build that waits for approval (an Approval step)")
    c.add_argument("build", help=build_help)
    c.add_argument("--comment", default="", help="why, shown with the build")
    c.add_argument("--property", action="append", default=[], metavar="NAME=VALUE", help="a value of its form")
    c = remote("reject", "reject a build that waits for approval; it fails")
    c.add_argument("build", help=build_help)
    c.add_argument("--comment", default="", help="why, shown with the build")
    c = remote("rebuild", "build a finished build again, with the same sources and properties")
    c.add_argument("build", help=build_help)
    c = remote("status", "show builders, recent builds (with their ids) and workers", reads=True)
    c.add_argument("--limit", type=int, default=10, help="recent builds shown")
    c = remote("logs", "print a build's logs, or one step's", reads=True)
    c.add_argument("build", help=build_help)
    c.add_argument("step", nargs="?", help="the step: its number as the page shows it (from 1) or its name")
    c.add_argument("--follow", "-f", action="store_true", help="print lines as they come until the build ends")
    worker = sub.add_parser("worker", help="pause, unpause or shut down a worker").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    c = remote("pause", "give the worker no new builds (running ones go on) until it is unpaused", worker)
    c.add_argument("name")
    c.add_argument("--reason", default="", help="why, for whoever looks at the workers")
    c = remote("unpause", "let a paused worker take builds again", worker)
    c.add_argument("name")
    c = remote("shutdown", "make the worker exit once its running builds end", worker)
    c.add_argument("name")
    c.add_argument("--now", action="store_true", help="at once: its builds end as RETRY and run again elsewhere")
    remote("workers", "list the instances of workers started on demand and their state", reads=True)
    c = sub.add_parser("demo", help="run a master and two workers on a throwaway directory")
    c.add_argument("--once", action="store_true", help="exit when the demo's builds are done")
    return p


def dispatch(args: argparse.Namespace) -> int | None:
    """Run the command ``args`` names; returns the exit code when it is not 0."""
    if "master" in vars(args):  # a command that talks to a running master, through one client
        return _remote(args, Client(args.master, token=args.token))
    if args.command == "create-master":
        path = run.create_master(args.basedir)
        print(
            f"created {path}\ncheck it with: flowbot checkconfig {args.basedir}\n"
            f"run it with:   flowbot start {args.basedir}"
        )
    elif args.command == "create-key":
        print(run.create_key(args.basedir))
    elif args.command == "checkconfig":
        print(run.checkconfig(args.basedir))
    elif args.command == "start" and args.daemon:
        argv = ["--http", args.http, "--zmq", args.zmq, "--heartbeat", str(args.heartbeat)]
        argv += ["--db", args.db] if args.db else []
        logfile = args.logfile or os.path.join(args.basedir, "master.log")
        print(run.start_daemon(args.basedir, argv, logfile, verbose=args.verbose))
    elif args.command == "start":
        run.start(args.basedir, http=args.http, workers=args.zmq, db=args.db, heartbeat=args.heartbeat)
    elif args.command == "reconfig":
        print(run.reconfig(args.basedir))
    elif args.command == "stop":
        print(f"stopped the master (pid {run.stop(args.basedir)})")
    elif args.command == "demo":
        from .demo import demo

        demo(once=args.once)


def _remote(args: argparse.Namespace, client: Client) -> int | None:
    """Run ``args``'s command against the master ``client`` talks to."""
    if args.command == "sendchange":
        answer = client.sendchange(
            branch=args.branch,
            revision=args.revision,
            author=args.author,
            comments=args.comments,
            repository=args.repository,
            project=args.project,
            files=args.files,
            properties=_properties(args.property),
        )
        print(f"change {answer['id']} accepted; build requests {answer['buildrequest_ids'] or 'none'}")
    elif args.command == "force":
        ids = client.force(
            args.builder,
            reason=args.reason,
            branch=args.branch,
            revision=args.revision,
            properties=_properties(args.property),
        )
        if not args.json:
            print(f"forced {args.builder}: build request(s) {', '.join(map(str, ids))}", flush=True)
        if args.wait or args.follow:
            return 0 if follow.wait(client, ids, follow_logs=args.follow, as_json=args.json) else 1
        if args.json:
            print(_json({"buildrequest_ids": ids}))
    elif args.command == "stop-build":
        client.stop(client.build_id(args.build), args.reason)
        print(f"stopping build {args.build}")
    elif args.command in ("approve", "reject"):
        build_id = client.build_id(args.build)
        if args.command == "approve":
            answer = client.approve(build_id, args.comment, _properties(args.property))
        else:
            answer = client.reject(build_id, args.comment)
        verb = "approved" if answer["approved"] else "rejected"
        print(f"{verb} build {args.build}" + (f" as {answer['by']}" if answer["by"] else ""))
    elif args.command == "rebuild":
        ids = client.rebuild(client.build_id(args.build))
        print(f"rebuilding build {args.build}: build request(s) {', '.join(map(str, ids))}")
    elif args.command == "status":
        print(status(client, args.limit, args.json))
    elif args.command == "logs":
        if args.follow:
            build = follow.follow(client, client.build_id(args.build), args.step, as_json=args.json)
            return 0 if result_json(build.result) in follow.PASSED else 1
        follow.logs(client, args.build, args.step, as_json=args.json)
    elif args.command == "workers":
        print(instances(client, args.json))
    elif args.command == "worker":
        print(worker(client, args))
    return None


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logfile = None if getattr(args, "daemon", False) else getattr(args, "logfile", None)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        # reopened when logrotate moves it away
        handlers=[logging.handlers.WatchedFileHandler(logfile)] if logfile else None,
    )
    if not args.verbose:  # one line per HTTP request or migration detail is noise, not news
        logging.getLogger("tornado.access").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        code = dispatch(args)
    except FlowbotError as exc:
        print(f"flowbot {args.command}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # piped into head, say: the reader has what it wanted
        sys.stderr.close()
        sys.exit(0)
    if code:
        sys.exit(code)
