"""Append-only tables, enforced by the database itself.

Row triggers refuse UPDATE and DELETE, a statement trigger refuses TRUNCATE, all set `ENABLE ALWAYS` so that
even `session_replication_role = replica` does not skip them. Migrations call `install()` (again after changing
a table's columns, as the UPDATE trigger names them); a test checks `missing_triggers()` is empty at head.

The signatures of a signed row are the one exception (`RESIGNABLE`): revoking a key re-signs what it signed
(`hashfed keys revoke`), so an UPDATE that sets that column and no other is let through; the signed bytes
(payload, size, root) stay immutable.
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
    "decisions",
)

# Table -> the one column holding its signatures, which a revocation replaces (hub/feed/revocation.py).
RESIGNABLE: dict[str, str] = {
    "batches": "signatures",
    "collection_checkpoints": "note",
    "audit_checkpoints": "note",
}

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION hashfed_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def trigger_names(table: str) -> tuple[str, ...]:
    return (f"{table}_no_update_delete", f"{table}_no_truncate")


def columns(conn: Connection, table: str) -> list[str]:
    """The table's column names, in order."""
    query = (
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = :t ORDER BY ordinal_position"
    )
    return [row[0] for row in conn.execute(text(query), {"t": table})]


def install(conn: Connection, table: str, *, resignable: bool = True) -> None:
    """Create the triggers that make `table` append-only on the connection's database.

    `resignable`: let an UPDATE that sets the table's `RESIGNABLE` column alone through (False: no UPDATE at
    all). The trigger names every other column at install time: a migration adding a column to such a table
    installs its triggers again.
    """
    column = RESIGNABLE.get(table) if resignable else None
    update = "UPDATE"
    if column:
        update = f"UPDATE OF {', '.join(c for c in columns(conn, table) if c != column)}"
    upd, trunc = trigger_names(table)
    conn.execute(text(_PG_FUNCTION))
    conn.execute(
        text(
            f"CREATE TRIGGER {upd} BEFORE {update} OR DELETE ON {table} "
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


def uninstall(conn: Connection, table: str) -> None:
    for name in trigger_names(table):
        conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {table}"))


def missing_triggers(conn: Connection) -> list[str]:
    """Names of expected append-only triggers that are absent or not `ENABLE ALWAYS` (on the tables the
    database's revision has: an older revision lacks the newer tables)."""
    missing: list[str] = []
    for table in APPEND_ONLY_TABLES:
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is None:
            continue
        for name in trigger_names(table):
            row = conn.execute(
                text("SELECT tgenabled FROM pg_trigger WHERE tgname = :n AND NOT tgisinternal"), {"n": name}
            ).first()
            if row is None or row[0] != "A":
                missing.append(name)
    return missing
