"""Transparency exports: one row per bundle, enough to write it again byte for byte (hub/exports/models.py).

Not partner-owned (any partner holding `exports:read` lists them), so no row-level security.

Revision ID: 0017_exports
Revises: 0016_governance
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0017_exports"
down_revision = "0016_governance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("period_label", sa.String(64), nullable=False),
        sa.Column("period_from", UTCDateTime(), nullable=False),
        sa.Column("period_to", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=True),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("end_seq", sa.BigInteger(), nullable=False),
        sa.Column("keyset_version", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("aggregates", sa.Text(), nullable=False),
        sa.Column("bundle_sha256", sa.String(64), nullable=False),
        sa.Column("bundle_bytes", sa.BigInteger(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("period_to > period_from", name="ck_exports_period"),
        sa.CheckConstraint("first_seq <= end_seq AND end_seq < checkpoint_size", name="ck_exports_entries"),
        sa.CheckConstraint("threshold >= 1", name="ck_exports_threshold"),
        sa.PrimaryKeyConstraint("id", name="pk_exports"),
    )
    op.create_index("ix_exports_published", "exports", ["published", "period_to"])


def downgrade() -> None:
    op.drop_index("ix_exports_published", table_name="exports")
    op.drop_table("exports")
