"""Audit tree: stored Merkle nodes, signed audit checkpoints, the signed key sets and the hub's public keys.

`audit_nodes` holds every perfect subtree hash of the audit log keyed by (level, idx), so roots and proofs
read O(log N) rows; `audit_checkpoints` the signed notes of the audit log; `key_sets` every signed key set
version (DSSE envelope bytes); `signing_keys` the public half of each online key. Nodes, checkpoints and
key sets are append-only (a perfect subtree hash never changes; a signed note or envelope is evidence).
`signing_keys` is not: a key's `valid_until` and `revoked_at` are set when it is rotated or revoked.

Revision ID: 0003_audit_tree
Revises: 0002_audit_entries
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime
from hub.transparency import appendonly

revision = "0003_audit_tree"
down_revision = "0002_audit_entries"
branch_labels = None
depends_on = None

_APPEND_ONLY = ("audit_nodes", "audit_checkpoints", "key_sets")


def upgrade() -> None:
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_audit_nodes"),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("size", name="pk_audit_checkpoints"),
    )
    op.create_table(
        "key_sets",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_key_sets"),
    )
    op.create_table(
        "signing_keys",
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("valid_until", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_signing_keys"),
        sa.CheckConstraint(
            "role IN ('batch', 'checkpoint', 'timestamp', 'audit', 'export', 'collection')",
            name="ck_signing_keys_role",
        ),
    )
    # The writers' row: the next audit seq and the newest entry time (hub.transparency.auditlog.AuditHead).
    op.create_table(
        "audit_head",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("next_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_time", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "INSERT INTO audit_head (id, next_seq, last_time) "
            "SELECT 1, COALESCE(MAX(seq) + 1, 0), MAX(recorded_at) FROM audit_entries"
        )
    )
    for table in _APPEND_ONLY:
        appendonly.install(bind, table)
    bind.exec_driver_sql(APPEND_FUNCTION)


# One round trip per audit entry on PostgreSQL (hub.transparency.auditlog.record): take the seq and the time from the
# head row, splice them into the entry's pre-encoded RFC 8785 parts, insert. SECURITY INVOKER: the hub's
# role needs its own UPDATE on audit_head and INSERT on audit_entries. The time format is
# audit.canonical.format_time's; a test checks the bytes equal audit.payloads.AuditEntry.to_bytes().
APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION hashfed_audit_append(head bytea, tail bytea, at timestamptz)
RETURNS TABLE (seq bigint, entry bytea, leaf_hash bytea, recorded_at timestamptz)
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    UPDATE audit_head h SET next_seq = h.next_seq + 1, last_time = greatest(coalesce(h.last_time, at), at)
    WHERE h.id = 1
    RETURNING h.next_seq - 1, h.last_time INTO seq, recorded_at;
    entry := head || convert_to(seq::text, 'UTF8') || tail
        || convert_to('"' || to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '"}', 'UTF8');
    leaf_hash := sha256(decode('00', 'hex') || entry);
    INSERT INTO audit_entries (seq, entry, leaf_hash, recorded_at)
    VALUES (seq, entry, leaf_hash, recorded_at);
    RETURN NEXT;
END
$$
"""


def downgrade() -> None:
    # Dropping signed checkpoints and key sets destroys evidence; allowed only as an operator's explicit act.
    bind = op.get_bind()
    for table in _APPEND_ONLY:
        appendonly.uninstall(bind, table)
    bind.execute(sa.text("DROP FUNCTION IF EXISTS hashfed_audit_append(bytea, bytea, timestamptz)"))
    op.drop_table("audit_head")
    op.drop_table("signing_keys")
    op.drop_table("key_sets")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_nodes")
