"""Upstream collections (hub/upstreams, issue 22) and false-positive votes cast beside another outcome.

`upstreams` holds each upstream (credentials encrypted only), `upstream_signals` which local signal each
upstream signal became. `false_positive_votes` records a partner's vote cast with a report of another outcome
(the StopNCII facade's `NotBlocked` is a `no_action` report and a vote); it is partner-owned, so it gets forced
row-level security as `reports` has. The upstream tables are the operator's, not a partner's: no RLS.

Revision ID: 0024_upstreams
Revises: 0023_feed_acks
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls
from hub.db import UTCDateTime

revision = "0024_upstreams"
down_revision = "0023_feed_acks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "false_positive_votes",
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("signal_id", sa.String(36), nullable=False),
        sa.Column("report_id", sa.String(128), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_false_positive_votes_partner_id_partners"),
        sa.PrimaryKeyConstraint("partner_id", "signal_id", name="pk_false_positive_votes"),
    )
    rls.enable(op.get_bind(), "false_positive_votes")
    op.create_table(
        "upstreams",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("upstream_collection", sa.String(200), nullable=True),
        sa.Column("client_id", sa.Text(), nullable=True),
        sa.Column("keyset_sha256", sa.String(64), nullable=True),
        sa.Column("credentials", sa.LargeBinary(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_success_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("kind IN ('hashfed', 'stopncii')", name="ck_upstreams_kind"),
        sa.CheckConstraint("position >= 0", name="ck_upstreams_position"),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], name="fk_upstreams_collection_id_collections"),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_upstreams_partner_id_partners"),
        sa.PrimaryKeyConstraint("id", name="pk_upstreams"),
        sa.UniqueConstraint("name", name="uq_upstreams_name"),
    )
    op.create_index("ix_upstreams_collection_id", "upstreams", ["collection_id"])
    op.create_table(
        "upstream_signals",
        sa.Column("upstream_id", sa.String(36), nullable=False),
        sa.Column("ref", sa.String(200), nullable=False),
        sa.Column("signal_id", sa.String(36), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["upstream_id"], ["upstreams.id"], name="fk_upstream_signals_upstream_id_upstreams"),
        sa.PrimaryKeyConstraint("upstream_id", "ref", name="pk_upstream_signals"),
    )
    op.create_index("ix_upstream_signals_signal", "upstream_signals", ["signal_id"])


def downgrade() -> None:
    op.drop_index("ix_upstream_signals_signal", table_name="upstream_signals")
    op.drop_table("upstream_signals")
    op.drop_index("ix_upstreams_collection_id", table_name="upstreams")
    op.drop_table("upstreams")
    rls.disable(op.get_bind(), "false_positive_votes")
    op.drop_table("false_positive_votes")
