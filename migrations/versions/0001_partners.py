"""Partners: the tenant table every partner-owned row will refer to.

Revision ID: 0001_partners
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0001_partners"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partners",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_partners"),
        sa.UniqueConstraint("name", name="uq_partners_name"),
        sa.CheckConstraint("kind IN ('platform', 'intake', 'governance', 'regulator')", name="ck_partners_kind"),
        sa.CheckConstraint("status IN ('active', 'suspended')", name="ck_partners_status"),
    )


def downgrade() -> None:
    op.drop_table("partners")
