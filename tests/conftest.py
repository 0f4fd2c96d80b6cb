"""Database fixtures: every database test runs on a real PostgreSQL, always.

The server is HASHFED_TEST_POSTGRES_URL when set (CI sets the machine's), otherwise a private one started once
per test session from the wheel the hub embeds: no database test can skip. Each test session creates its own
database there and drops it at the end; the schema always comes from the migrations. Each test runs inside a
transaction that is rolled back.

No test may depend on today's date. `--clock DATE` (or HASHFED_TEST_CLOCK) runs the whole suite with the wall clock
moved to DATE and ticking from there (time-machine moves datetime.now and time.time for every thread of this
process); CI runs the suite once more under a far date. A test that needs a fixed moment freezes it with
time-machine's `time_machine` fixture.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from hub.app import create_app
from hub.config import Settings
from hub.db import make_engine
from hub.ops import embedded, migrate
from hub.ops.dbroles import ensure_role, grant_app_role

_EMBEDDED: list[embedded.EmbeddedPostgres] = []  # this session's private server, when no URL is given
BASE_URL = "http://127.0.0.1:8000"
# On PostgreSQL the tests, like the serving hub, connect as a role that owns no table (docs/operations.md).
APP_ROLE = "hashfed_app"


_HARNESS = ("HASHFED_TEST_", "HASHFED_REQUIRE_BROWSER")
_CLOCK = pytest.StashKey[time_machine.travel]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock",
        metavar="DATE",
        default=os.environ.get("HASHFED_TEST_CLOCK", ""),
        help="run the suite with the wall clock moved to DATE (ISO 8601, UTC unless an offset is given)",
    )


def shifted_clock(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def pytest_configure(config: pytest.Config) -> None:
    # HASHFED_* settings from the caller's shell (a hub's, or stale ones) would leak into every CLI test, which
    # refuses unknown names: tests set what they need. The test harness's own variables stay.
    for name in [n for n in os.environ if n.startswith("HASHFED_") and not n.startswith(_HARNESS)]:
        del os.environ[name]
    value = config.getoption("--clock")
    if value:
        traveller = time_machine.travel(shifted_clock(value), tick=True)
        traveller.start()
        config.stash[_CLOCK] = traveller


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop_embedded()
    traveller = config.stash.get(_CLOCK, None)
    if traveller is not None:
        traveller.stop()


def pytest_report_header(config: pytest.Config) -> str:
    value = config.getoption("--clock")
    return f"clock: moved to {shifted_clock(value).isoformat()}" if value else "clock: real"


def admin_url() -> str:
    """A PostgreSQL role that may create databases: HASHFED_TEST_POSTGRES_URL when set (CI sets the machine's
    server), otherwise the superuser of a private server started for this session from the hub's own wheel."""
    url = os.environ.get("HASHFED_TEST_POSTGRES_URL")
    if url:
        return url
    if not _EMBEDDED:
        _EMBEDDED.append(embedded.start(Path(tempfile.mkdtemp(prefix="hashfed-test-"))))
    return _EMBEDDED[0].superuser_url


def _stop_embedded() -> None:
    while _EMBEDDED:
        server = _EMBEDDED.pop()
        server.close()
        shutil.rmtree(server.pgdata.parent, ignore_errors=True)


@dataclass
class Database:
    """A migrated database made for this test session (or one test), dropped afterwards."""

    name: str
    url: str  # the owner's URL: migrations and superuser-only checks
    app_url: str  # the application role's URL: what the hub and the tests use
    engine: Engine  # connected as the application role


def create_database(*, migrate_to: str | None = "heads") -> tuple[str, str]:
    """Create an empty database on the test server; returns its owner URL and its name."""
    name = f"hashfed_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = make_engine(admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    url = make_url(admin_url()).set(database=name).render_as_string(hide_password=False)
    if migrate_to:
        migrate.upgrade(url, migrate_to)
        grant(url)
    return url, name


def grant(url: str) -> None:
    """Give the application role its privileges (run again after migrating further)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        ensure_role(conn, APP_ROLE)
        grant_app_role(conn, APP_ROLE)
    engine.dispose()


def app_url(url: str) -> str:
    return make_url(url).set(username=APP_ROLE, password=None).render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    admin = make_engine(admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def _made_database() -> Iterator[Database]:
    url, name = create_database()
    engine = make_engine(app_url(url))
    try:
        yield Database(name, url, app_url(url), engine)
    finally:
        engine.dispose()
        drop_database(name)


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    """One migrated database for the whole test session."""
    with _made_database() as db:
        yield db


@pytest.fixture
def fresh_database() -> Iterator[Database]:
    """A database of this test's own, for tests that commit (append-only rows, concurrency)."""
    with _made_database() as db:
        yield db


@pytest.fixture
def connection(database: Database) -> Iterator[Connection]:
    conn = database.engine.connect()
    trans = conn.begin()
    try:
        yield conn
    finally:
        if trans.is_active:
            trans.rollback()
        conn.close()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    """Sessions that commit to a SAVEPOINT inside the test's transaction."""
    return sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as s:
        yield s


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", database_url=database.app_url, base_url=BASE_URL, hub_name="hub.test")


@pytest.fixture
def app(settings: Settings, database: Database, session_factory: sessionmaker[Session]) -> Flask:
    return create_app(settings, engine=database.engine, session_factory=session_factory)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
