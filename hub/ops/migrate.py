"""Alembic, driven from code: the only way the hub's schema is created, in tests too."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

import migrations

SCRIPT_LOCATION = str(Path(migrations.__file__).parent)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    # Alembic's config is a ConfigParser: a literal '%' in a URL must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def heads() -> tuple[str, ...]:
    # Reading the scripts needs no database: any URL of the right kind will do.
    return tuple(ScriptDirectory.from_config(alembic_config("postgresql://")).get_heads())


def current_revisions(bind: Engine | Connection) -> tuple[str, ...]:
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return current_revisions(conn)
    # A readiness probe asks this every few seconds: keep Alembic's per-call INFO lines out of the log.
    quiet = logging.getLogger("alembic.runtime.migration")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        return tuple(MigrationContext.configure(bind).get_current_heads())
    finally:
        quiet.setLevel(level)


def schema_status(bind: Engine | Connection) -> str | None:
    """None when the database is at the Alembic head, else why not."""
    current = set(current_revisions(bind))
    head = set(heads())
    if not current:
        return "database schema is not initialised; run `hashfed db upgrade`"
    if current != head:
        return f"database schema is at {sorted(current)}, code expects {sorted(head)}; run `hashfed db upgrade`"
    return None
