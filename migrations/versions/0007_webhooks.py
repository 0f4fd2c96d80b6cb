"""Webhooks: a partner's endpoint and the checkpoint deliveries the hub pushes to it (hub/webhooks/service.py).

`webhook_endpoints` holds one HTTPS URL per partner; `webhook_deliveries` one row per (partner, collection,
checkpoint size) announced, with its attempts, so retries back off and each final outcome is audited. Both
are partner-owned and get forced row-level security on PostgreSQL.

Revision ID: 0007_webhooks
Revises: 0006_reports
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls
from hub.db import UTCDateTime

revision = "0007_webhooks"
down_revision = "0006_reports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("partner_id", name="pk_webhook_endpoints"),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_webhook_endpoints_partner_id_partners"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint(
            "partner_id", "collection_id", "size", name="uq_webhook_deliveries_partner_id_collection_id_size"
        ),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_status"),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_webhook_deliveries_partner_id_partners"),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    bind = op.get_bind()
    for table in ("webhook_endpoints", "webhook_deliveries"):
        rls.enable(bind, table, "partner_id")


def downgrade() -> None:
    bind = op.get_bind()
    for table in ("webhook_endpoints", "webhook_deliveries"):
        rls.disable(bind, table)
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
