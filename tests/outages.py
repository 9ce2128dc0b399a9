"""Outages a test can cause at will: a PostgreSQL server of its own to stop and start, and a small
filesystem of its own to fill.

Neither touches the machine's shared services: :class:`PostgresServer` is a private server
(``initdb`` into a temporary directory, a free port on 127.0.0.1, trust authentication), and
:class:`SmallDisk` is a tmpfs mounted for the test. PostgreSQL refuses to run as root, so under
root (as in CI) the server runs as the ``postgres`` user; mounting needs root.

Test modules get them through the ``stoppable_postgres`` and ``small_disk`` fixtures of
``tests/conftest.py``; other code (benchmarks) may use the classes directly. Each leaves the id of
the process that made it in its directory, so what a killed test run left behind (a server still
running, a filesystem still mounted) is cleared by the next one that makes its own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

from .support import free_port

#: Settings that make a throw-away server quick to start, stop and write (nothing here must survive a crash).
_QUICK = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "40",
    "unix_socket_directories": "''",
    "logging_collector": "off",
}


#: The file in an outage's directory that names the process that made it.
_OWNER = "owner.pid"


def _claim(root: Path) -> None:
    (root / _OWNER).write_text(f"{os.getpid()}\n")


def _abandoned(pattern: str) -> list[Path]:
    """Directories matching ``pattern`` in the temporary directory whose maker has exited."""
    left = []
    for root in Path(tempfile.gettempdir()).glob(pattern):
        try:
            os.kill(int((root / _OWNER).read_text()), 0)
        except ProcessLookupError:
            left.append(root)
        except (OSError, ValueError):  # no owner file (being made), or not ours to judge
            continue
    return left


def postgres_binaries() -> Path | None:
    """The directory of the newest installed PostgreSQL's server programs, if there is one."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _run_as_postgres(program: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program, as the ``postgres`` user under root (the server refuses root)."""
    user = "postgres" if os.geteuid() == 0 else None
    return subprocess.run([str(program), *args], user=user, capture_output=True, text=True, cwd=cwd)


class PostgresServer:
    """A PostgreSQL server of one's own, on a free loopback port.

    Args:
        bindir: where ``initdb``, ``pg_ctl`` and ``postgres`` are.
        root: an empty directory for the cluster and its log (removed by :meth:`remove`).
    """

    def __init__(self, bindir: Path, root: Path):
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = free_port()
        root.chmod(0o755)
        _claim(root)
        if os.geteuid() == 0:
            os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            for name, value in {**_QUICK, "listen_addresses": "'127.0.0.1'", "port": str(self.port)}.items():
                conf.write(f"{name} = {value}\n")
        self.running = False

    @classmethod
    def create(cls) -> PostgresServer:
        """initdb a new cluster in a temporary directory (not started yet)."""
        bindir = postgres_binaries()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server programs (apt-get install postgresql)")
        for root in _abandoned("flowbot-postgres-*"):  # a killed run's server
            _run_as_postgres(bindir / "pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(root / "data"), cwd=root)
            shutil.rmtree(root, ignore_errors=True)
        return cls(bindir, Path(tempfile.mkdtemp(prefix="flowbot-postgres-")))

    def _run(self, program: str, *args: str) -> None:
        done = _run_as_postgres(self.bindir / program, *args, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> None:
        """Start the server and wait until it takes connections."""
        self._run("pg_ctl", "start", "-w", "-t", "30", "-D", str(self.data), "-l", str(self.log))
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends every session at once, ``immediate`` is a crash."""
        self._run("pg_ctl", "stop", "-w", "-t", "30", "-m", mode, "-D", str(self.data))
        self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        name = f"flowbot_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            admin.dispose()
        return self.url(name)

    def remove(self) -> None:
        """Stop the server if it runs and delete its files."""
        if self.running:
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class SmallDisk:
    """A tmpfs of ``size`` bytes mounted on a temporary directory: a filesystem that really fills up.

    :meth:`fill` takes every free byte with a ballast file, :meth:`free` deletes it again.
    """

    def __init__(self, size: int):
        for path in _abandoned("flowbot-disk-*"):  # a killed run's filesystem
            _unmount(path)
        self.path = Path(tempfile.mkdtemp(prefix="flowbot-disk-"))
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            self.path.rmdir()
            raise RuntimeError(f"cannot mount a tmpfs: {done.stderr.strip()}")
        _claim(self.path)
        self._ballast = self.path / "ballast"

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self) -> None:
        """Take every free byte (writes that need more space fail with ENOSPC from now on)."""
        block = b"\0" * 65536
        with open(self._ballast, "ab", buffering=0) as ballast:
            for size in (65536, 4096, 512, 1):
                try:
                    while True:
                        ballast.write(block[:size])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise

    def free(self) -> None:
        """Give the space back."""
        self._ballast.unlink(missing_ok=True)

    def unmount(self) -> None:
        _unmount(self.path)


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
    with contextlib.suppress(OSError):
        path.rmdir()


def can_mount() -> str | None:
    """Why a test cannot mount a tmpfs here, or None when it can."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if not shutil.which("mount"):
        return "no mount program"
    return None
