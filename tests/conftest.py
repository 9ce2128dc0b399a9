"""Shared fixtures: real masters, real workers and real databases that clean up after themselves.

A test that needs PostgreSQL skips when none answers at ``FLOWBOT_TEST_POSTGRES`` (default:
``postgresql+psycopg://postgres@127.0.0.1:5432/test``), except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from .irc_server import NGIRCD, IrcServer
from .oidc_server import OidcProvider
from .oidc_server import install as oidc_install
from .outages import PostgresServer, SmallDisk, can_mount, postgres_binaries
from .proxy import LoopbackProxy
from .support import SAMPLE_PIPELINE, MasterProcess, RecordingServer, WorkerProcess, wait_for

POSTGRES_URL = os.environ.get("FLOWBOT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# -- databases ----------------------------------------------------------------------------------


def _missing(message: str) -> None:
    """Skip the test for want of ``message``'s service; fail it in CI, which must never skip one."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _postgres_available() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # any failure to connect means "not here"
        return str(exc).splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL URL; skips the test locally (fails it in CI) when nothing answers there."""
    problem = _postgres_available()
    if problem:
        _missing(f"PostgreSQL is not available at {POSTGRES_URL}: {problem}")
    return POSTGRES_URL


@pytest.fixture
def postgres_db(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"flowbot_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the tests' own (never the shared one), made once for the session."""
    if postgres_binaries() is None:
        _missing("no PostgreSQL server programs to start a server of the tests' own (apt-get install postgresql)")
    server = PostgresServer.create()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def stoppable_postgres(own_postgres: PostgresServer) -> Iterator[PostgresServer]:
    """A running PostgreSQL server the test may stop and start at will (make a database with
    ``create_database()``); it runs again after the test."""
    if not own_postgres.running:
        own_postgres.start()
    yield own_postgres
    if not own_postgres.running:
        own_postgres.start()


@pytest.fixture
def small_disk() -> Iterator[Callable[[int], SmallDisk]]:
    """Mount small filesystems (a tmpfs of the given size) to fill; unmounted after the test."""
    problem = can_mount()
    if problem:
        _missing(problem)
    mounted: list[SmallDisk] = []

    def mount(size: int) -> SmallDisk:
        disk = SmallDisk(size)
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:
        disk.unmount()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return request.getfixturevalue("postgres_db")


@pytest.fixture
def master_factory(tmp_path: Path) -> Iterator[Callable[..., MasterProcess]]:
    """Start ``flowbot start`` on a directory holding ``pipeline`` (source text); stopped at teardown."""
    started: list[MasterProcess] = []

    def start(
        pipeline: str = SAMPLE_PIPELINE, *, name: str = "master", wait: bool = True, **options: object
    ) -> MasterProcess:
        basedir = tmp_path / name
        basedir.mkdir(exist_ok=True)
        (basedir / "pipeline.py").write_text(textwrap.dedent(pipeline))
        master = MasterProcess(basedir, **options)
        started.append(master)
        return master.wait_ready() if wait else master

    yield start
    for master in started:
        master.stop()


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``flowbot-worker`` processes (``env`` adds to their environment); stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(
        master: MasterProcess, name: str, secret: str, *, wait: bool = True, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        worker = WorkerProcess(master.endpoint, name, secret, tmp_path / name, env)
        started.append(worker)
        if wait:
            wait_for(
                lambda: any(w["name"] == name and w["connected"] for w in master.client.workers()),
                20,
                f"worker {name} to connect",
            )
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def proxy_to():
    """Put a proxy between a master and the workers started after it; closed at teardown."""
    proxies = []

    def make(master: MasterProcess, record: bool = False) -> LoopbackProxy:
        proxies.append(LoopbackProxy(master.zmq_port, record))
        master.endpoint = f"tcp://127.0.0.1:{proxies[-1].port}"
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


# -- Docker -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_worker_image() -> str:
    """A worker image on the local Docker daemon (built once, see tests/docker_image.py); skips the
    test locally (fails it in CI) when no daemon answers."""
    from .docker_image import docker_problem, worker_image

    problem = docker_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return worker_image()


# -- servers that reporters talk to ---------------------------------------------------------------


@pytest.fixture
def http_recorder() -> Iterator[Callable[..., RecordingServer]]:
    """Start HTTP servers that record what they are sent (see :class:`RecordingServer`)."""
    servers: list[RecordingServer] = []

    def start(statuses: list[int] | None = None) -> RecordingServer:
        server = RecordingServer(statuses)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def irc_server(tmp_path: Path) -> Iterator[Callable[..., IrcServer]]:
    """Start real IRC servers (Debian's ngircd, on free loopback ports); each is stopped at teardown.
    Skips the test locally (fails it in CI) when ngircd is not installed."""
    if not os.path.exists(NGIRCD):
        _missing(f"ngircd is not installed at {NGIRCD} (apt-get install ngircd)")
    servers: list[IrcServer] = []

    def start(*, certificate: Path | None = None) -> IrcServer:
        server = IrcServer(tmp_path / f"ngircd-{len(servers) + 1}", certificate=certificate)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def oidc_installed() -> Path:
    """The OpenID provider of the tests, installed from the npm registry once; skips the test
    locally (fails it in CI) without node and npm."""
    if not (shutil.which("node") and shutil.which("npm")):
        _missing("node and npm are needed for the OpenID provider (apt-get install nodejs npm)")
    return oidc_install()


@pytest.fixture
def oidc_provider(oidc_installed: Path, tmp_path: Path) -> Iterator[Callable[..., OidcProvider]]:
    """Start OpenID providers (see :class:`OidcProvider`); each is stopped at teardown."""
    providers: list[OidcProvider] = []

    def start(**options: object) -> OidcProvider:
        directory = tmp_path / f"provider-{len(providers) + 1}"
        directory.mkdir()
        provider = OidcProvider(oidc_installed, directory, **options)
        providers.append(provider)
        return provider.start()

    yield start
    for provider in providers:
        provider.stop()


# -- the browser ------------------------------------------------------------------------------------

#: Debian's Chromium, driven by Playwright (never a browser of Playwright's own download).
CHROMIUM = os.environ.get("FLOWBOT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless Chromium; skips the test locally (fails it in CI) when Chromium or Playwright is missing."""
    problem = None
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        problem = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "Playwright is not installed (pip install -e '.[test]')"
    if problem:
        _missing(problem)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
