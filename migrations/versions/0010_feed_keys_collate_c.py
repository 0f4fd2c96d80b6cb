"""Feed keys collate "C" (PostgreSQL): ids, hex values and the short codes of the feed tables compare bytewise.

The key columns of `signals`, `pending_changes`, `signal_seqs` and `retired_values` took the database's
collation. A database created with a libc locale such as C.UTF-8 is not "C" to PostgreSQL 15: every btree
comparison of those columns (each insert into the primary keys and the unique index of active values, each
deduplication probe, the sealer's range scans and inserts) went through strcoll, and sorts could not use
abbreviated keys. The values are lowercase hex digests, UUIDs and ASCII codes, whose order is the same
bytewise, so no result and no order changes; the columns simply say so. Comparisons with columns of the
default collation (collections, members, reports) take "C" (an explicit non-default collation wins).

ALTER COLUMN ... TYPE rebuilds the indexes of each table; the row-level security policies that read those
columns are dropped and re-created exactly as they were (PostgreSQL refuses to change a column a policy
uses). The downgrade restores the default collation.

Revision ID: 0010_feed_keys_collate_c
Revises: 0009_signal_seqs
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_feed_keys_collate_c"
down_revision = "0009_signal_seqs"
branch_labels = None
depends_on = None

# (table, column, length): what the models declare (hub/feed/signals.py).
COLUMNS = (
    ("signals", "id", 36),
    ("signals", "collection_id", 36),
    ("signals", "type", 10),
    ("signals", "value", 64),
    ("signals", "contributor_id", 36),
    ("signals", "status", 10),
    ("pending_changes", "collection_id", 36),
    ("pending_changes", "signal_id", 36),
    ("pending_changes", "op", 6),
    ("signal_seqs", "signal_id", 36),
    ("retired_values", "type", 10),
    ("retired_values", "value", 64),
)
_TABLES = sorted({table for table, _, _ in COLUMNS})


def _policies(bind: sa.Connection) -> list[tuple[str, str, str]]:
    """(table, name, CREATE POLICY statement) of every policy on the tables changed here."""
    rows = bind.execute(
        sa.text(
            "SELECT tablename, policyname, permissive, roles, cmd, qual, with_check FROM pg_policies"
            " WHERE schemaname = current_schema() AND tablename = ANY(:tables) ORDER BY tablename, policyname"
        ),
        {"tables": _TABLES},
    )
    out = []
    for table, name, permissive, roles, cmd, qual, check in rows:
        statement = f"CREATE POLICY {name} ON {table} AS {permissive} FOR {cmd} TO {', '.join(roles)}"
        if qual is not None:
            statement += f" USING ({qual})"
        if check is not None:
            statement += f" WITH CHECK ({check})"
        out.append((table, name, statement))
    return out


def _set_collation(collation: str) -> None:
    bind = op.get_bind()
    policies = _policies(bind)
    for table, name, _ in policies:
        op.execute(f"DROP POLICY {name} ON {table}")
    for table in _TABLES:
        changes = ", ".join(
            f'ALTER COLUMN {column} TYPE varchar({length}) COLLATE "{collation}"'
            for t, column, length in COLUMNS
            if t == table
        )
        op.execute(f"ALTER TABLE {table} {changes}")
    for _, _, statement in policies:
        op.execute(statement)


def upgrade() -> None:
    _set_collation("C")


def downgrade() -> None:
    _set_collation("default")
