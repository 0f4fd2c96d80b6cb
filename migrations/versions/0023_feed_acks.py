"""`feed_acks`: each partner's latest acknowledgement of each collection's log, beside its `feed.ack` audit entry.

The audit entry stays the record; the row is its latest state, written in the same transaction, so that a case's
status can count the partners that hold the batch publishing its hashes without scanning the audit log. Existing
acknowledgements are copied from the audit log once (the newest `feed.ack` entry of each partner and collection).
Under row-level security by partner, like every partner-owned table.

Revision ID: 0023_feed_acks
Revises: 0022_vpdq_signals
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls
from hub.db import UTCDateTime

revision = "0023_feed_acks"
down_revision = "0022_vpdq_signals"
branch_labels = None
depends_on = None

# RFC 8785 sorts "action" first in every entry: the prefix finds ack entries without parsing the others.
_ACK_PREFIX = '{"action":"feed.ack",'
# The newest ack entry of each (partner, collection) whose partner and collection exist.
_BACKFILL = (
    "INSERT INTO feed_acks (partner_id, collection_id, size, audit_seq, acked_at)"
    " SELECT DISTINCT ON (a.partner, a.collection) a.partner, a.collection, a.size, a.seq, a.recorded_at"
    " FROM (SELECT e.seq, e.recorded_at, e.j->'details'->>'partner' AS partner,"
    "  substr(e.j->>'subject', length('collection/') + 1) AS collection,"
    "  (e.j->'details'->>'size')::bigint AS size"
    "  FROM (SELECT seq, recorded_at, convert_from(entry, 'UTF8')::jsonb AS j FROM audit_entries"
    "   WHERE substring(entry from 1 for :n) = convert_to(:prefix, 'UTF8')) e) a"
    " WHERE a.partner IN (SELECT id FROM partners) AND a.collection IN (SELECT id FROM collections)"
    " ORDER BY a.partner, a.collection, a.seq DESC"
)


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "feed_acks",
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("acked_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_feed_acks_partner_id_partners"),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], name="fk_feed_acks_collection_id_collections"),
        sa.PrimaryKeyConstraint("partner_id", "collection_id", name="pk_feed_acks"),
    )
    op.create_index("ix_feed_acks_collection", "feed_acks", ["collection_id", "size"])
    rls.enable(bind, "feed_acks", "partner_id")
    rls.set_tenant(bind, rls.SYSTEM)
    bind.execute(sa.text(_BACKFILL), {"n": len(_ACK_PREFIX), "prefix": _ACK_PREFIX})


def downgrade() -> None:
    rls.disable(op.get_bind(), "feed_acks")
    op.drop_index("ix_feed_acks_collection", table_name="feed_acks")
    op.drop_table("feed_acks")
