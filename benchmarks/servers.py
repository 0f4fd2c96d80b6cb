"""The PostgreSQL a hub-side benchmark runs against: `--server embedded` or `--server external [--url URL]`.

embedded  a private PostgreSQL started by the benchmark from the hub's own wheel (`hub.embedded.start`) in a
          temporary folder, removed afterwards: each scratch database is owned by the role `hashfed` and migrated
          as it, as the hub's commands do, and the hub connects over the Unix socket as `hashfed_app`.
external  the server at `--url` (a role that may create databases; default HASHFED_BENCH_POSTGRES_URL or the
          machine's server): each scratch database is created, migrated from that role, granted to
          `hashfed_app` and dropped afterwards (`scratch.scratch_database`).

In both cases the benchmark's hub connects as `hashfed_app`, which owns no table, so row-level security and the
append-only grants apply as in production.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scratch import ADMIN, Scratch, scratch_database
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from hub.config import Settings
from hub.db import make_engine, make_session_factory
from hub.ops import embedded, migrate

SETTINGS = (
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "shared_buffers",
    "max_wal_size",
    "commit_delay",
    "commit_siblings",
    "jit",
    "autovacuum",
)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--server",
        choices=["embedded", "external"],
        default="external",
        help="embedded: a private PostgreSQL from the hub's wheel; external: the server at --url",
    )
    ap.add_argument("--url", default=ADMIN, help="external server: a role that may create databases")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting for the scratch databases only (ALTER DATABASE ... SET, as the superuser), "
        "e.g. commit_delay=200; repeatable",
    )


@dataclass
class Server:
    """A running server to make scratch databases on."""

    kind: str
    admin_url: str  # a superuser: creates and drops the scratch databases
    settings: tuple[str, ...] = ()  # NAME=VALUE, set on each scratch database

    @contextmanager
    def database(self) -> Iterator[Scratch]:
        """A migrated scratch database granted to `hashfed_app`, dropped however the benchmark ends."""
        made = scratch_database(self.admin_url) if self.kind == "external" else self._embedded_database()
        with made as scratch:
            self._apply_settings(make_url(scratch.owner_url).database or "")
            yield scratch

    def _apply_settings(self, name: str) -> None:
        if not self.settings:
            return
        admin = make_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for setting in self.settings:
                    key, _, value = setting.partition("=")
                    if not key.isidentifier():
                        raise SystemExit(f"--set {setting}: not NAME=VALUE")
                    conn.execute(text(f'ALTER DATABASE "{name}" SET {key} = ' + _literal(value)))
        finally:
            admin.dispose()

    @contextmanager
    def _embedded_database(self) -> Iterator[Scratch]:
        name = f"hashfed_bench_{secrets.token_hex(4)}"
        admin = make_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" OWNER {embedded.OWNER}'))
        url = make_url(self.admin_url).set(database=name)
        owner_url = url.set(username=embedded.OWNER, password=None).render_as_string(hide_password=False)
        try:
            migrate.upgrade(owner_url)
            embedded.grant_app_role(owner_url)
            app_url = url.set(username=embedded.APP_ROLE, password=None).render_as_string(hide_password=False)
            yield Scratch(owner_url, app_url)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    def describe(self) -> str:
        """The server's version and the settings that bear on the figures, one line each."""
        engine = make_engine(self.admin_url)
        try:
            with engine.connect() as conn:
                version = conn.scalar(text("SHOW server_version"))
                values = [f"{name}={conn.scalar(text(f'SHOW {name}'))}" for name in SETTINGS]
        finally:
            engine.dispose()
        where = "Unix socket" if self.kind == "embedded" else make_url(self.admin_url).render_as_string()
        extra = f"\n         scratch databases: {' '.join(self.settings)}" if self.settings else ""
        return f"server : {self.kind} PostgreSQL {version} ({where})\n         {' '.join(values)}{extra}"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@contextmanager
def server(args: argparse.Namespace) -> Iterator[Server]:
    """The server named by `--server`; an embedded one is stopped and its folder removed afterwards."""
    settings = tuple(getattr(args, "set", None) or ())
    if args.server == "external":
        yield Server("external", args.url, settings)
        return
    folder = Path(tempfile.mkdtemp(prefix="hashfed-bench-"))
    try:
        handle = embedded.start(folder / "var")
        try:
            yield Server("embedded", handle.superuser_url, settings)
        finally:
            handle.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


@dataclass
class BenchHub:
    """A benchmark's hub: its settings, and an engine and session factory on a migrated scratch database."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]


@contextmanager
def hub_database(args: argparse.Namespace) -> Iterator[BenchHub]:
    """A scratch database on the server `args` names, for a hub called bench.test; prints the server first."""
    tmp = Path(tempfile.mkdtemp())
    with server(args) as srv, srv.database() as scratch:
        print(srv.describe())
        print(f"loadavg at start: {loadavg()}")
        engine = make_engine(scratch.app_url)
        settings = Settings(var_dir=tmp / "var", database_url=scratch.app_url, hub_name="bench.test")
        try:
            yield BenchHub(settings, engine, make_session_factory(engine))
        finally:
            engine.dispose()
