"""Reports: partners' match and takedown reports, their append-only outcome history, and signal flags.

`reports` holds one row per (partner, the partner's own report id); its outcome columns cache the newest
row of `report_outcomes`, which is append-only (triggers, like the audit log): an outcome change adds a
version and nothing is overwritten. Both are partner-owned and get forced row-level security on
PostgreSQL. `signal_flags` is governance state about a signal (how many partners reported it as a false
positive, and when it was flagged for review); it belongs to no partner.

This revision also merges the heads that existed when it was written (audit tree, OAuth, feed).

Revision ID: 0006_reports
Revises: 0003_audit_tree, 0004_oauth, 0005_feed
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls
from hub.db import UTCDateTime
from hub.transparency import appendonly

revision = "0006_reports"
down_revision = ("0003_audit_tree", "0004_oauth", "0005_feed")
branch_labels = None
depends_on = None

_OUTCOMES = "outcome IN ('pending_review', 'blocked', 'removed', 'restricted', 'no_action', 'false_positive')"


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("report_id", sa.String(128), nullable=False),
        sa.Column("signal_id", sa.String(36), nullable=False),
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("distance", sa.SmallInteger(), nullable=False),
        sa.Column("surface", sa.String(20), nullable=False),
        sa.Column("content_ref_digest", sa.String(64), nullable=False),
        sa.Column("matched_at", UTCDateTime(), nullable=False),
        sa.Column("automated_detection", sa.Boolean(), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("actioned_at", UTCDateTime(), nullable=True),
        sa.Column("automated_decision", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(_OUTCOMES, name="ck_reports_outcome"),
        sa.CheckConstraint(
            "surface IN ('upload', 'existing_content', 'account')", name="ck_reports_surface"
        ),
        sa.CheckConstraint("distance >= 0 AND distance <= 256", name="ck_reports_distance"),
        sa.CheckConstraint("seq >= 1", name="ck_reports_seq"),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_reports_partner_id_partners"),
        sa.ForeignKeyConstraint(["signal_id"], ["signals.id"], name="fk_reports_signal_id_signals"),
        sa.ForeignKeyConstraint(
            ["collection_id"], ["collections.id"], name="fk_reports_collection_id_collections"
        ),
        sa.PrimaryKeyConstraint("partner_id", "report_id", name="pk_reports"),
    )
    op.create_index("ix_reports_partner_received", "reports", ["partner_id", "received_at", "report_id"])
    op.create_index("ix_reports_signal_partner", "reports", ["signal_id", "partner_id"])
    op.create_table(
        "report_outcomes",
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("report_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("actioned_at", UTCDateTime(), nullable=True),
        sa.Column("automated_decision", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("report_sha256", sa.String(64), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(_OUTCOMES, name="ck_report_outcomes_outcome"),
        sa.CheckConstraint("version >= 1", name="ck_report_outcomes_version"),
        sa.ForeignKeyConstraint(
            ["partner_id", "report_id"],
            ["reports.partner_id", "reports.report_id"],
            name="fk_report_outcomes_report",
        ),
        sa.PrimaryKeyConstraint("partner_id", "report_id", "version", name="pk_report_outcomes"),
    )
    op.create_table(
        "signal_flags",
        sa.Column("signal_id", sa.String(36), nullable=False),
        sa.Column("false_positive_partners", sa.Integer(), nullable=False),
        sa.Column("flagged_at", UTCDateTime(), nullable=True),
        sa.Column("flag_audit_seq", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["signal_id"], ["signals.id"], name="fk_signal_flags_signal_id_signals"),
        sa.PrimaryKeyConstraint("signal_id", name="pk_signal_flags"),
    )
    bind = op.get_bind()
    appendonly.install(bind, "report_outcomes")
    for table in ("reports", "report_outcomes"):
        rls.enable(bind, table, "partner_id")


def downgrade() -> None:
    # Dropping reports destroys the record a regulator may ask for; their audit entries stay in the log.
    bind = op.get_bind()
    for table in ("reports", "report_outcomes"):
        rls.disable(bind, table)
    appendonly.uninstall(bind, "report_outcomes")
    op.drop_table("signal_flags")
    op.drop_table("report_outcomes")
    op.drop_index("ix_reports_signal_partner", table_name="reports")
    op.drop_index("ix_reports_partner_received", table_name="reports")
    op.drop_table("reports")
