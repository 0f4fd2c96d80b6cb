"""Feed: collections and their members, signals and their pending changes, the retired deny list,
idempotency keys, and each collection's log (sealed batches, Merkle nodes, signed checkpoints, the head).

Batches, nodes and checkpoints are append-only (evidence a partner may hold); the head, signals, members
and idempotency keys change. `signals` is the big table, so it carries only what has a reader: the primary
key and a partial unique index (one active (type, value) per collection); no foreign keys (their per-row
checks dominated bulk ingest; the service checks both under the audit lock, and neither collections nor
partners are ever deleted). Pending adds and removes are narrow rows in `pending_changes`, which the sealer
reads in signal id order and deletes, so sealing never searches the wide signal rows.

Row-level security (PostgreSQL): idempotency keys belong to their partner. Signals do not have it yet: the
hub-hosted matcher builds one process-wide index from `signals` inside a partner's request, which a policy
limited to that partner's collections would silently truncate (docs/protocol.md section 10 says what lands
with it). Batch payloads and envelopes are TOASTed with lz4 where the server has it (PostgreSQL 14+ built
with lz4): the JSON around the hex digests compresses, which cuts the sealer's WAL by about a third and costs
less than the bytes it saves; pglz cost more than the write, so without lz4 they are stored uncompressed.

Revision ID: 0005_feed
Revises: 0002_audit_entries
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls
from hub.db import UTCDateTime
from hub.transparency import appendonly

revision = "0005_feed"
down_revision = "0002_audit_entries"
branch_labels = None
depends_on = None

_APPEND_ONLY = ("batches", "collection_nodes", "collection_checkpoints")


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("signal_types", sa.String(100), nullable=False),
        sa.Column("pdq_threshold", sa.Integer(), nullable=False),
        sa.Column("min_quality", sa.Integer(), nullable=False),
        sa.Column("descriptor", sa.LargeBinary(), nullable=False),
        sa.Column("descriptor_version", sa.Integer(), nullable=False),
        sa.Column("descriptor_audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "pdq_threshold >= 0 AND pdq_threshold <= 256", name="ck_collections_pdq_threshold"
        ),
        sa.CheckConstraint("min_quality >= 0 AND min_quality <= 100", name="ck_collections_min_quality"),
        sa.ForeignKeyConstraint(["owner_id"], ["partners.id"], name="fk_collections_owner_id_partners"),
        sa.PrimaryKeyConstraint("id", name="pk_collections"),
        sa.UniqueConstraint("slug", name="uq_collections_slug"),
    )
    op.create_table(
        "collection_members",
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("access", sa.String(20), nullable=False),
        sa.Column("granted_at", UTCDateTime(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("access IN ('reader', 'contributor')", name="ck_collection_members_access"),
        sa.ForeignKeyConstraint(
            ["collection_id"], ["collections.id"], name="fk_collection_members_collection_id_collections"
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_collection_members_partner_id_partners"
        ),
        sa.PrimaryKeyConstraint("collection_id", "partner_id", "access", name="pk_collection_members"),
    )
    op.create_index("ix_collection_members_partner_id", "collection_members", ["partner_id"])
    op.create_table(
        "signals",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(10), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.Column("case_ref", sa.String(200), nullable=True),
        sa.Column("contributor_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("added_audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("added_seq", sa.BigInteger(), nullable=True),
        sa.Column("removed_audit_seq", sa.BigInteger(), nullable=True),
        sa.Column("removed_seq", sa.BigInteger(), nullable=True),
        sa.Column("removal_reason", sa.String(20), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("type IN ('pdq', 'md5', 'sha256')", name="ck_signals_type"),
        sa.CheckConstraint("status IN ('active', 'retracted', 'retired')", name="ck_signals_status"),
        sa.CheckConstraint("quality IS NULL OR (quality >= 0 AND quality <= 100)", name="ck_signals_quality"),
        sa.PrimaryKeyConstraint("id", name="pk_signals"),
    )
    op.create_index(
        "uq_signals_active_value",
        "signals",
        ["collection_id", "type", "value"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "pending_changes",
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("signal_id", sa.String(36), nullable=False),
        sa.Column("op", sa.String(6), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("op IN ('add', 'remove')", name="ck_pending_changes_op"),
        sa.PrimaryKeyConstraint("collection_id", "signal_id", name="pk_pending_changes"),
    )
    op.create_table(
        "retired_values",
        sa.Column("type", sa.String(10), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("type", "value", name="pk_retired_values"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_idempotency_keys_partner_id_partners"
        ),
        sa.PrimaryKeyConstraint("partner_id", "key", name="pk_idempotency_keys"),
    )
    op.create_table(
        "batches",
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("adds", sa.Integer(), nullable=False),
        sa.Column("removes", sa.Integer(), nullable=False),
        sa.Column("sealed_at", UTCDateTime(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"], ["collections.id"], name="fk_batches_collection_id_collections"
        ),
        sa.PrimaryKeyConstraint("collection_id", "seq", name="pk_batches"),
    )
    op.create_table(
        "collection_nodes",
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"], ["collections.id"], name="fk_collection_nodes_collection_id_collections"
        ),
        sa.PrimaryKeyConstraint("collection_id", "level", "idx", name="pk_collection_nodes"),
    )
    op.create_table(
        "collection_checkpoints",
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"], ["collections.id"], name="fk_collection_checkpoints_collection_id_collections"
        ),
        sa.PrimaryKeyConstraint("collection_id", "size", name="pk_collection_checkpoints"),
    )
    op.create_table(
        "collection_heads",
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("cosigned_at", UTCDateTime(), nullable=False),
        sa.Column("sealed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["collection_id"], ["collections.id"], name="fk_collection_heads_collection_id_collections"
        ),
        sa.PrimaryKeyConstraint("collection_id", name="pk_collection_heads"),
    )
    bind = op.get_bind()
    for table in _APPEND_ONLY:
        appendonly.install(bind, table)
    lz4 = bind.execute(
        sa.text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    for column in ("payload", "envelope"):
        if lz4:
            op.execute(f"ALTER TABLE batches ALTER COLUMN {column} SET COMPRESSION lz4")
        else:
            op.execute(f"ALTER TABLE batches ALTER COLUMN {column} SET STORAGE EXTERNAL")
    # Updates set a signal's seqs and status once or twice in its life: room on the page lets them be
    # HOT updates (no index entries written), about three times faster when sealing a million.
    op.execute("ALTER TABLE signals SET (fillfactor = 50)")
    rls.enable(bind, "idempotency_keys", "partner_id")


def downgrade() -> None:
    # Dropping sealed batches and checkpoints destroys what partners verified: an explicit operator act.
    bind = op.get_bind()
    rls.disable(bind, "idempotency_keys")
    for table in _APPEND_ONLY:
        appendonly.uninstall(bind, table)
    for table in (
        "collection_heads",
        "collection_checkpoints",
        "collection_nodes",
        "batches",
        "idempotency_keys",
        "retired_values",
    ):
        op.drop_table(table)
    op.drop_table("pending_changes")
    op.drop_index("uq_signals_active_value", table_name="signals")
    op.drop_table("signals")
    op.drop_index("ix_collection_members_partner_id", table_name="collection_members")
    op.drop_table("collection_members")
    op.drop_table("collections")
