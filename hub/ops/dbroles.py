"""The application role on PostgreSQL: the hub connects as a role that does not own its tables.

Migrations run as the owner. The serving hub connects as the application role, which may only INSERT and
SELECT on append-only tables (and UPDATE their signature column, which a key revocation re-signs) and may not
bypass row-level security (the owner could, so it must not serve).
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

from hub.transparency import appendonly

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_app_role(conn: Connection, role: str) -> None:
    """Grant `role` what the serving hub needs on every table at the current schema, and no more."""
    if not _ROLE.match(role):
        raise ValueError(f"invalid role name {role!r}")
    tables = [
        row[0]
        for row in conn.execute(
            text(
                "SELECT tablename FROM pg_tables "
                "WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            )
        )
    ]
    conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
    conn.execute(text(f"GRANT SELECT ON alembic_version TO {role}"))
    for table in tables:
        conn.execute(text(f"REVOKE ALL ON {table} FROM {role}"))
        if table in appendonly.APPEND_ONLY_TABLES:
            conn.execute(text(f"GRANT SELECT, INSERT ON {table} TO {role}"))
            column = appendonly.RESIGNABLE.get(table)
            if column in appendonly.columns(conn, table):  # a revocation re-signs in place (hub/feed/revocation.py)
                conn.execute(text(f"GRANT UPDATE ({column}) ON {table} TO {role}"))
        else:
            conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}"))
    conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"))


def ensure_role(conn: Connection, role: str) -> None:
    """Create a login role with no special powers if it does not exist (tests and first set-up)."""
    if not _ROLE.match(role):
        raise ValueError(f"invalid role name {role!r}")
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if not exists:
        conn.execute(text(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"))


def set_password(conn: Connection, role: str, password: str) -> None:
    """Set the login password of `role` (the driver quotes the literal; it never reaches a log)."""
    if not _ROLE.match(role):
        raise ValueError(f"invalid role name {role!r}")
    conn.execute(text(f"ALTER ROLE {role} PASSWORD :password"), {"password": password})
