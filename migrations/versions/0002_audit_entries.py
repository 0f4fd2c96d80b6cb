"""Audit entries: the leaves of the hub's audit log, append-only by trigger on both databases.

Revision ID: 0002_audit_entries
Revises: 0001_partners
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime
from hub.transparency import appendonly

revision = "0002_audit_entries"
down_revision = "0001_partners"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_entries"),
    )
    appendonly.install(op.get_bind(), "audit_entries")


def downgrade() -> None:
    # Dropping the log destroys evidence; allowed only because a downgrade is an operator's explicit act.
    appendonly.uninstall(op.get_bind(), "audit_entries")
    op.drop_table("audit_entries")
