"""Webhook deliveries carry an event: a collection's checkpoint, as before, or a decision on a dispute.

A dispute event tells the disputing partner and the contributor that staff decided; the body names the dispute
and the partner fetches it with its own token (the event itself proves nothing, so it carries nothing else).
The unique key gains the event, and `size` holds the decision's audit seq for a dispute event.

Revision ID: 0018_dispute_webhooks
Revises: 0017_exports
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls

revision = "0018_dispute_webhooks"
down_revision = "0017_exports"
branch_labels = None
depends_on = None

_OLD_UNIQUE = "uq_webhook_deliveries_partner_id_collection_id_size"


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("event", sa.String(12), nullable=False, server_default="checkpoint"))
    op.alter_column("webhook_deliveries", "event", server_default=None)
    op.add_column("webhook_deliveries", sa.Column("dispute_id", sa.String(36), nullable=True))
    op.drop_constraint(_OLD_UNIQUE, "webhook_deliveries", type_="unique")
    op.create_unique_constraint(
        "uq_webhook_deliveries_event", "webhook_deliveries", ["partner_id", "event", "collection_id", "size"]
    )
    op.create_check_constraint(
        "ck_webhook_deliveries_event", "webhook_deliveries", "event IN ('checkpoint', 'dispute')"
    )
    op.create_check_constraint(
        "ck_webhook_deliveries_dispute", "webhook_deliveries", "(event = 'dispute') = (dispute_id IS NOT NULL)"
    )


def downgrade() -> None:
    rls.set_tenant(op.get_bind(), rls.SYSTEM)  # webhook_deliveries is under row-level security
    op.execute("DELETE FROM webhook_deliveries WHERE event <> 'checkpoint'")
    op.drop_constraint("ck_webhook_deliveries_dispute", "webhook_deliveries", type_="check")
    op.drop_constraint("ck_webhook_deliveries_event", "webhook_deliveries", type_="check")
    op.drop_constraint("uq_webhook_deliveries_event", "webhook_deliveries", type_="unique")
    op.create_unique_constraint(_OLD_UNIQUE, "webhook_deliveries", ["partner_id", "collection_id", "size"])
    op.drop_column("webhook_deliveries", "dispute_id")
    op.drop_column("webhook_deliveries", "event")
