"""Per-partner API keys of the StopNCII-compatible facade (hub/compat): digests only, revocable.

The table is partner-owned, so it gets forced row-level security as `oauth_clients` has (hub/rls.py); the
facade looks a presented key up as SYSTEM, before the partner is known, as the token lookup does.

Revision ID: 0019_compat_api_keys
Revises: 0018_dispute_webhooks
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls
from hub.db import UTCDateTime

revision = "0019_compat_api_keys"
down_revision = "0018_dispute_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compat_api_keys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("collection_id", sa.String(36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_compat_api_keys_partner_id_partners"),
        sa.PrimaryKeyConstraint("id", name="pk_compat_api_keys"),
        sa.UniqueConstraint("digest", name="uq_compat_api_keys_digest"),
    )
    op.create_index("ix_compat_api_keys_partner_id", "compat_api_keys", ["partner_id"])
    rls.enable(op.get_bind(), "compat_api_keys")


def downgrade() -> None:
    rls.disable(op.get_bind(), "compat_api_keys")
    op.drop_index("ix_compat_api_keys_partner_id", table_name="compat_api_keys")
    op.drop_table("compat_api_keys")
