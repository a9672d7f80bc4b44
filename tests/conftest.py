"""Shared fixtures. Storage tests run on a real SQLite file and on a real PostgreSQL; when PostgreSQL is
unreachable they fail, they do not skip (set CARTBACK_TEST_PG_URL to point elsewhere)."""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import sqlalchemy as sa

from cartback.core.clock import system_clock
from cartback.store import workspaces
from cartback.store.db import Database, sqlalchemy_url

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

PG_URL = os.environ.get("CARTBACK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

for _name in [n for n in os.environ if n.startswith("CARTBACK_") and n != "CARTBACK_TEST_PG_URL"]:
    del os.environ[_name]


# Servers and apps that tests start have no rate limits unless the test sets them (`env=` of start_server):
# the defaults (350 requests/s per key) would throttle the load and crash tests, which send thousands of
# requests with one key. tests/integration/test_ratelimits.py and tests/e2e/test_ratelimits.py set them.
NO_RATE_LIMITS = {"CARTBACK_RATE_LIMIT_BURST": "0", "CARTBACK_RATE_LIMIT_STEADY": "0"}


class PgDatabases:
    """Empty migrated PostgreSQL databases, one per test, so that nothing a test leaves (a waiting
    enrollment, a queued message) can reach another.

    The first is migrated once per session and is the template of the others (`CREATE DATABASE ...
    TEMPLATE`); a database a test gave back is emptied and handed to the next test instead of being
    dropped and copied again, since a copy costs 0.3 s on an idle machine and several seconds on a busy
    one, and emptying it some 0.05 s. Emptying happens when the next test takes it, after every server
    and worker of the previous test has stopped: whatever is still connected is disconnected first, then
    every table but alembic_version is emptied."""

    def __init__(self, admin_url: str) -> None:
        self.admin = sa.create_engine(sqlalchemy_url(admin_url), isolation_level="AUTOCOMMIT")
        self.base = admin_url.rsplit("/", 1)[0]
        self.prefix = f"cartback_test_{os.getpid()}_{secrets.token_hex(3)}"
        self.template = f"{self.prefix}_template"
        self.made: list[str] = []
        self.free: list[str] = []

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def create_template(self) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self.template}"')
        database = Database(self.url(self.template))
        database.migrate()
        database.close()  # a template must have no connections while it is copied

    def take(self) -> str:
        """The URL of an empty migrated database that no other test is using."""
        if not self.free:
            name = f"{self.prefix}_{len(self.made)}"
            with self.admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
            self.made.append(name)
            return self.url(name)
        name = self.free.pop()
        with self.admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        engine = sa.create_engine(sqlalchemy_url(self.url(name)), poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                tables = (
                    conn.exec_driver_sql(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                        " AND tablename <> 'alembic_version'"
                    )
                    .scalars()
                    .all()
                )
                # Foreign keys are triggers, which the replica role skips: the tables empty in any order.
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
                for table in tables:
                    conn.exec_driver_sql(f'DELETE FROM "{table}"')
        finally:
            engine.dispose()
        return self.url(name)

    def give_back(self, url: str) -> None:
        self.free.append(url.rsplit("/", 1)[1])

    def close(self) -> None:
        with self.admin.connect() as conn:
            for name in [*self.made, self.template]:
                # FORCE: a server a test started may still be stopping.
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    """The session's source of fresh PostgreSQL databases (see PgDatabases)."""
    databases = PgDatabases(PG_URL)
    try:
        databases.create_template()
    except sa.exc.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {PG_URL} is unreachable ({exc.orig}); start it or set CARTBACK_TEST_PG_URL"
        )
    yield databases
    databases.close()


@pytest.fixture
def pg_database(pg_databases: PgDatabases) -> Iterator[str]:
    """An empty migrated PostgreSQL database for this test alone."""
    url = pg_databases.take()
    yield url
    pg_databases.give_back(url)


@pytest.fixture(scope="module")
def pg_module_database(pg_databases: PgDatabases) -> Iterator[str]:
    """An empty migrated PostgreSQL database shared by the tests of one module (module-scoped fixtures
    that start one app for many small requests)."""
    url = pg_databases.take()
    yield url
    pg_databases.give_back(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session: each test gets a copy, since migrating a new file (every
    migration, one by one) takes 0.2 s and copying it a millisecond."""
    path = tmp_path_factory.mktemp("template") / "cartback.db"
    database = Database(f"sqlite:///{path}")
    database.migrate()
    database.close()  # the last connection's close checkpoints the WAL into the file
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty migrated database of each kind, for this test alone: a copy of the migrated
    SQLite template, or a PostgreSQL database of PgDatabases."""
    if request.param == "sqlite":
        path = tmp_path / "cartback.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.close()


@dataclass
class Tenant:
    id: str
    name: str
    key: str


@pytest.fixture
def make_workspace(db: Database) -> Iterator[Callable[[], Tenant]]:
    """Create workspaces with one all-scopes key each."""
    database = db

    def make() -> Tenant:
        name = f"ws-{secrets.token_hex(4)}"

        def create(tx: workspaces.Tx) -> Tenant:
            ws = workspaces.create_workspace(tx, name, system_clock.now())
            _, secret = workspaces.create_api_key(tx, ws.id, system_clock.now())
            return Tenant(ws.id, name, secret)

        return database.write_sync(create)

    yield make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A `cartback serve` subprocess."""

    url: str
    database_url: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    port: int = 0
    extra_args: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def start(self) -> Server:
        assert self.log is not None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cartback", "serve", "--port", str(self.port), *self.extra_args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cartback serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"cartback serve did not become ready: {self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start `cartback serve` subprocesses on a given database; all are stopped after the test."""
    servers: list[Server] = []

    def start(
        database_url: str, *, env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> Server:
        port = free_port()
        full_env = {
            **os.environ,
            "CARTBACK_DATABASE_URL": database_url,
            "CARTBACK_TICK_SECONDS": "0.05",
            **NO_RATE_LIMITS,
        }
        full_env.update(env or {})
        server = Server(
            url=f"http://127.0.0.1:{port}",
            database_url=database_url,
            env=full_env,
            port=port,
            log=tmp_path / f"serve-{port}.log",
            extra_args=args or [],
        )
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., Server], db_url: str) -> Server:
    """A running server on each kind of database."""
    return start_server(db_url)


@pytest.fixture
def app_client(db_url: str, make_workspace: Callable[[], Tenant]) -> Iterator[ApiClient]:
    """The app in-process (real database, no network), authenticated as a fresh workspace."""
    from fastapi.testclient import TestClient

    from cartback.app import create_app
    from cartback.settings import Settings

    tenant = make_workspace()
    settings = Settings(database_url=db_url, rate_limit_burst=0, rate_limit_steady=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {tenant.key}"
        yield ApiClient(client, tenant, make_workspace)


@dataclass
class ApiClient:
    http: "TestClient"  # noqa: UP037
    tenant: Tenant
    make_workspace: Callable[[], Tenant]

    def post(self, path: str, json: object = None, **kwargs: object) -> httpx.Response:
        return self.http.post("/api/v1" + path, json=json, **kwargs)  # type: ignore[arg-type]

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.http.get("/api/v1" + path, **kwargs)  # type: ignore[arg-type]

    def patch(self, path: str, json: object = None, **kwargs: object) -> httpx.Response:
        return self.http.patch("/api/v1" + path, json=json, **kwargs)  # type: ignore[arg-type]

    def delete(self, path: str, **kwargs: object) -> httpx.Response:
        return self.http.delete("/api/v1" + path, **kwargs)  # type: ignore[arg-type]

    def as_other_workspace(self) -> dict[str, str]:
        """Headers that authenticate as a different, fresh workspace."""
        return {"Authorization": f"Bearer {self.make_workspace().key}"}


# -- the dashboard in a real browser ----------------------------------------------------------------

CHROMIUM = os.environ.get("CARTBACK_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        default=str(Path(__file__).parent.parent / "test-artifacts" / "screenshots"),
        help="Directory the browser tests save a screenshot of each dashboard page to.",
    )


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's headless Chromium driven by Playwright. Missing Chromium fails the test, never skips it:
    `.ci/run` installs it (apt-get install chromium). Module-scoped on purpose: Playwright's sync API keeps
    an event loop running in the main thread until it stops, which would break every later test that calls
    asyncio.run()."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Callable[[object, str], Path]:
    """save(page, name): a full-page PNG under --screenshots/<test name>/<name>.png."""
    folder = Path(request.config.getoption("--screenshots")) / request.node.name.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)

    def save(page: object, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path

    return save


def pytest_collection_finish(session: pytest.Session) -> None:
    """What exists once the tests are collected (the modules, the collected items, what imports built)
    lives until the session ends: frozen, so that the collections of the garbage every test makes walk
    only what the tests make, as `cartback serve` freezes its own start-up objects (server.py)."""
    gc.collect()
    gc.freeze()
