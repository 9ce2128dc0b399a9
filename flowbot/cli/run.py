"""Running a master from a directory: ``create-master``, ``create-key``, ``checkconfig``, ``start``, ``stop``."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from flowbot_worker.curve import create_key as create_key_files
from flowbot_worker.curve import load_key_pair
from flowbot_worker.errors import KeyFileError

from ..config import load_pipeline, pipeline_file
from ..defaults import (
    HEARTBEAT_INTERVAL,
    HTTP_HOST,
    HTTP_PORT,
    MASTER_KEY_NAME,
    PID_FILE,
    RECONFIG_RESULT_FILE,
    WORKER_ENDPOINT,
)
from ..errors import FlowbotError
from .table import plural

log = logging.getLogger("flowbot")


def create_master(basedir: str | Path) -> Path:
    """Make a master directory with a commented sample ``pipeline.py`` that works as is."""
    path = pipeline_file(basedir)
    if path.exists():
        raise FlowbotError(f"{path} exists already; not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(resources.files("flowbot.cli").joinpath("templates/pipeline.py").read_text())
    return path


def create_key(basedir: str | Path) -> str:
    """Make the master's CURVE key pair, ``master.key`` and ``master.key_secret``, in ``basedir``;
    returns what to do with it."""
    try:
        public, secret = create_key_files(basedir, MASTER_KEY_NAME)
    except KeyFileError as exc:
        raise FlowbotError(str(exc)) from None
    key = load_key_pair(secret).public
    return (
        f"wrote {public} and {secret} (keep that one private)\n"
        f"master public key: {key}\n"
        f'encrypt the worker link with: Pipeline(..., curve_key="{secret.name}") and a public_key for each Worker\n'
        f"workers then run with: flowbot-worker ... --master-key {shlex.quote(key)} --key-file W.key_secret"
    )


def checkconfig(basedir: str | Path) -> str:
    """Load the directory's pipeline; returns a summary (and its warnings) or raises ConfigError."""
    pipeline = load_pipeline(basedir)
    return "\n".join(
        [
            f"{pipeline_file(basedir)}: OK: {plural(len(pipeline.workers), 'worker')}, "
            f"{plural(len(pipeline.schedulers), 'scheduler')}, {plural(len(pipeline.builders), 'builder')}"
            + ("; worker link encrypted (CURVE)" if pipeline.curve else ""),
            *(f"warning: {text}" for text in pipeline.warnings),
        ]
    )


def _pid_path(basedir: str | Path) -> Path:
    return Path(basedir) / PID_FILE


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (an exited process its parent has not reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc here: trust kill()
        return True


def running_pid(basedir: str | Path) -> int | None:
    """The pid of the master running in ``basedir``, if one is.

    A pid file left by a master that was killed may name a process that has since taken its
    number: a pid is only believed while its command line is a flowbot one."""
    try:
        pid = int(_pid_path(basedir).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and _is_flowbot(pid) else None


def _is_flowbot(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"flowbot" in f.read()
    except OSError:  # no /proc here: trust the pid file
        return True


def start(
    basedir: str | Path,
    *,
    http: str = f"{HTTP_HOST}:{HTTP_PORT}",
    workers: str = WORKER_ENDPOINT,
    db: str | None = None,
    heartbeat: float = HEARTBEAT_INTERVAL,
) -> None:
    """Run the master of ``basedir`` in the foreground until SIGINT or SIGTERM."""
    import zmq

    from ..master import Master

    pipeline = load_pipeline(basedir)
    other = running_pid(basedir)
    if other is not None:
        raise FlowbotError(f"a master is already running in {basedir} (pid {other})")

    async def main() -> None:
        master = Master(pipeline, basedir=basedir, db=db, http=http, workers=workers, heartbeat=heartbeat)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        async def reload() -> None:
            try:
                await master.reload()
            except Exception as exc:  # whatever it was, the master runs on with the pipeline it had
                log.error("reconfig refused, still running the previous pipeline: %s", exc)
                _write_reconfig_result(basedir, f"refused, still running the previous pipeline: {exc}")
            else:
                log.info("reconfig applied")
                _write_reconfig_result(basedir, None)

        loop.add_signal_handler(signal.SIGHUP, lambda: master.spawn(reload(), "reconfig"))
        try:
            await master.start()
        except OSError as exc:
            raise FlowbotError(f"cannot listen for HTTP on {http}: {exc.strerror}") from None
        except zmq.ZMQError as exc:
            raise FlowbotError(f"cannot listen for workers on {workers}: {exc}") from None
        # What is alive now (the modules, the pipeline, the store's metadata) lives as long as the
        # master: set apart from the collector, so that no full collection walks it again (one
        # took tens of milliseconds of the loop, and the collector some 5 % of a build's CPU).
        gc.collect()
        gc.freeze()
        pid_path = _pid_path(basedir)
        pid_path.write_text(f"{os.getpid()}\n")
        log.info("master running (pid %d); stop it with: flowbot stop %s", os.getpid(), basedir)
        try:
            await stop.wait()
            log.info("stopping")
        finally:
            try:
                await master.stop()
            finally:  # however the stop went, this master runs no more
                pid_path.unlink(missing_ok=True)
        log.info("stopped")

    asyncio.run(main())


def start_daemon(
    basedir: str | Path, argv: list[str], logfile: str | Path, *, verbose: bool = False, timeout: float = 60.0
) -> str:
    """Run ``flowbot start BASEDIR ARGV...`` in the background, logging to ``logfile``, and wait
    until it serves (its pid file names it); returns what to tell the user.

    Raises:
        FlowbotError: a master runs there already, or this one exited first (with its log's end).
    """
    other = running_pid(basedir)
    if other is not None:
        raise FlowbotError(f"a master is already running in {basedir} (pid {other})")
    logfile = Path(logfile).resolve()
    before = logfile.stat().st_size if logfile.exists() else 0
    command = [sys.executable, "-m", "flowbot", *(["--verbose"] if verbose else []), "start", str(basedir), *argv]
    command += ["--logfile", str(logfile)]
    with open(logfile, "ab") as out:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while running_pid(basedir) != child.pid:
        if child.poll() is not None or time.monotonic() > deadline:
            if child.poll() is None:
                child.terminate()
            with open(logfile, "rb") as f:
                f.seek(before)
                said = f.read().decode(errors="replace").strip().splitlines()[-5:]
            raise FlowbotError("the master did not start:\n" + "\n".join(said))
        time.sleep(0.05)
    return (
        f"master running in the background (pid {child.pid}), logging to {logfile}; "
        f"stop it with: flowbot stop {basedir}"
    )


def reconfig(basedir: str | Path, timeout: float = 60.0) -> str:
    """Check the directory's pipeline here, ask its running master to apply it (SIGHUP), and wait
    for the master's word on how that went.

    Raises:
        ConfigError: the pipeline is broken (checked here, before the master is asked).
        FlowbotError: no master runs there, it refused the pipeline, or it did not answer in time.
    """
    summary = checkconfig(basedir)
    pid = running_pid(basedir)
    if pid is None:
        raise FlowbotError(f"no master is running in {basedir}")
    result = Path(basedir) / RECONFIG_RESULT_FILE
    before = _read(result)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while (answer := _read(result)) == before:
        if time.monotonic() > deadline or not _alive(pid):
            raise FlowbotError(f"the master (pid {pid}) did not say whether it applied the pipeline; see its log")
        time.sleep(0.05)
    outcome = json.loads(answer)
    if outcome["error"] is not None:
        raise FlowbotError(f"the master {outcome['error']}")
    return f"{summary}\nthe master (pid {pid}) runs it now"


def _write_reconfig_result(basedir: str | Path, error: str | None) -> None:
    """Tell ``flowbot reconfig`` how its request went: a file replaced whole, never half written."""
    path = Path(basedir) / RECONFIG_RESULT_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"at": time.time_ns(), "error": error}))
    partial.replace(path)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def stop(basedir: str | Path, timeout: float = 30.0) -> int:
    """Stop the master running in ``basedir`` (SIGTERM), waiting until it has exited."""
    pid = running_pid(basedir)
    if pid is None:
        raise FlowbotError(f"no master is running in {basedir}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return pid
        time.sleep(0.05)
    raise FlowbotError(f"the master (pid {pid}) did not stop within {timeout:.0f} s")
