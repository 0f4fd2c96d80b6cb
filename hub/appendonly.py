"""Append-only tables, enforced by the database itself.

PostgreSQL: row triggers refuse UPDATE and DELETE, a statement trigger refuses TRUNCATE, all set
`ENABLE ALWAYS` so that even `session_replication_role = replica` does not skip them. SQLite: triggers that
RAISE(ABORT). Migrations call `install()`; a test checks `missing_triggers()` is empty at head, because
Alembic's SQLite batch mode silently drops triggers when it rebuilds a table.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

# Every append-only table. Later migrations add theirs here and call install().
APPEND_ONLY_TABLES: tuple[str, ...] = (
    "audit_entries",
    "audit_nodes",
    "audit_checkpoints",
    "key_sets",
    "batches",
    "collection_nodes",
    "collection_checkpoints",
    "report_outcomes",
)

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION hashfed_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def trigger_names(table: str, dialect: str) -> tuple[str, ...]:
    if dialect == "postgresql":
        return (f"{table}_no_update_delete", f"{table}_no_truncate")
    return (f"{table}_no_update", f"{table}_no_delete")


def install(conn: Connection, table: str) -> None:
    """Create the triggers that make `table` append-only on the connection's database."""
    if conn.dialect.name == "postgresql":
        upd, trunc = trigger_names(table, "postgresql")
        conn.execute(text(_PG_FUNCTION))
        conn.execute(
            text(
                f"CREATE TRIGGER {upd} BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION hashfed_append_only()"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {trunc} BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION hashfed_append_only()"
            )
        )
        conn.execute(text(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {upd}"))
        conn.execute(text(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trunc}"))
        return
    upd, dele = trigger_names(table, conn.dialect.name)
    for name, op in ((upd, "UPDATE"), (dele, "DELETE")):
        conn.execute(
            text(
                f"CREATE TRIGGER {name} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END"
            )
        )


def uninstall(conn: Connection, table: str) -> None:
    for name in trigger_names(table, conn.dialect.name):
        suffix = f" ON {table}" if conn.dialect.name == "postgresql" else ""
        conn.execute(text(f"DROP TRIGGER IF EXISTS {name}{suffix}"))


def missing_triggers(conn: Connection) -> list[str]:
    """Names of expected append-only triggers that are absent or not `ENABLE ALWAYS`."""
    missing: list[str] = []
    for table in APPEND_ONLY_TABLES:
        for name in trigger_names(table, conn.dialect.name):
            if conn.dialect.name == "postgresql":
                row = conn.execute(
                    text("SELECT tgenabled FROM pg_trigger WHERE tgname = :n AND NOT tgisinternal"), {"n": name}
                ).first()
                if row is None or row[0] != "A":
                    missing.append(name)
            else:
                row = conn.execute(
                    text("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = :n"), {"n": name}
                ).first()
                if row is None:
                    missing.append(name)
    return missing
