"""Governance: case claims on signals, disputes, and staff decisions.

`signal_claims` holds one row per (signal, contributing partner, case): the case reference only as a keyed
digest (HMAC-SHA256 under the hub secret, '' for a contribution without a case), except the first contributor's
contribution without a case, which is the signal's new `plain_claim` flag (a platform's bulk submission writes no
claim rows). A duplicate submission adds
its claim instead of dropping its case, and withdrawing a case removes its claims; a hash leaves the feed when
no claim is left. The plain `signals.case_ref` column goes: existing references become digests here, which
needs the hub secret (`HASHFED_KEYS_DIR`, as the hub reads it) when any signal carries one.

Signals gain two statuses: `quarantined` (withheld from the feed while staff review a dispute) and `released`
(a quarantine that ended: the hash was published again under a new signal id). A partial index finds the
quarantined values of a collection, which a submission may not add again while they are under review.

`disputes` is visible to its disputing partner and to the contributor (row-level security on both columns);
`decisions` is append-only like the audit log.

Revision ID: 0016_governance
Revises: 0015_pending_entries_required
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls
from hub.config import Settings
from hub.db import UTCDateTime
from hub.transparency import appendonly
from hub.transparency.keys import keyed_digest, load_hub_secret

revision = "0016_governance"
down_revision = "0015_pending_entries_required"
branch_labels = None
depends_on = None

_OLD_STATUSES = "status IN ('active', 'retracted', 'retired')"
_NEW_STATUSES = "status IN ('active', 'retracted', 'retired', 'quarantined', 'released')"
_DISPUTE_POLICY = "disputes_parties"
_TENANT = f"current_setting('{rls.SETTING}', true)"
_PARTIES = f"(partner_id::text = {_TENANT} OR contributor_id::text = {_TENANT} OR {_TENANT} = '{rls.SYSTEM}')"


def case_digest(secret: bytes, partner_id: str, case_ref: str) -> str:
    """As hub/feed/signals.py computes it (kept here so the revision stays as it was when it ran)."""
    return keyed_digest(secret, f"case-ref\x00{partner_id}\x00{case_ref}")


def upgrade() -> None:
    bind = op.get_bind()
    rls.set_tenant(bind, rls.SYSTEM)  # `signals` is under row-level security (forced for its owner too)
    op.create_table(
        "signal_claims",
        sa.Column("signal_id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("case_digest", sa.String(64), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("signal_id", "partner_id", "case_digest", name="pk_signal_claims"),
    )
    op.create_index(
        "ix_signal_claims_case",
        "signal_claims",
        ["partner_id", "case_digest"],
        postgresql_where=sa.text("case_digest <> ''"),
    )
    rls.enable(bind, "signal_claims", "partner_id")

    # The first contributor's contribution without a case is the signal's own `plain_claim`, with no row.
    op.add_column("signals", sa.Column("plain_claim", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.alter_column("signals", "plain_claim", server_default=None)
    op.execute("UPDATE signals SET plain_claim = true WHERE case_ref IS NULL")
    cased = bind.execute(
        sa.text(
            "SELECT id, contributor_id, case_ref, added_audit_seq, created_at FROM signals WHERE case_ref IS NOT NULL"
        )
    ).all()
    if cased:
        secret = load_hub_secret(Settings.from_env().keys_path)
        bind.execute(
            sa.text(
                "INSERT INTO signal_claims (signal_id, partner_id, case_digest, audit_seq, created_at)"
                " VALUES (:s, :p, :d, :a, :t)"
            ),
            [{"s": s, "p": p, "d": case_digest(secret, p, ref), "a": a, "t": t} for s, p, ref, a, t in cased],
        )
    op.drop_column("signals", "case_ref")
    op.execute('ALTER TABLE signals ALTER COLUMN status TYPE varchar(12) COLLATE "C"')  # 'quarantined'
    op.drop_constraint("ck_signals_status", "signals", type_="check")
    op.create_check_constraint("ck_signals_status", "signals", _NEW_STATUSES)
    op.create_index(
        "ix_signals_quarantined",
        "signals",
        ["collection_id", "type", "value"],
        postgresql_where=sa.text("status = 'quarantined'"),
    )

    op.create_table(
        "disputes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=True),
        sa.Column("dispute_key", sa.String(128), nullable=True),
        sa.Column("signal_id", sa.String(36), nullable=False),
        sa.Column("collection_id", sa.String(36), nullable=False),
        sa.Column("contributor_id", sa.String(36), nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("open_audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("answer", sa.String(1000), nullable=True),
        sa.Column("answered_at", UTCDateTime(), nullable=True),
        sa.Column("assignee_id", sa.String(36), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_disputes"),
        sa.CheckConstraint(
            "reason IN ('false_positive', 'not_in_scope', 'consent', 'low_quality', 'other')",
            name="ck_disputes_reason",
        ),
        sa.CheckConstraint(
            "status IN ('open', 'awaiting_confirmation', 'quarantined', 'upheld', 'rejected', 'released')",
            name="ck_disputes_status",
        ),
        sa.CheckConstraint("source IN ('partner', 'flag')", name="ck_disputes_source"),
        sa.CheckConstraint("(source = 'partner') = (partner_id IS NOT NULL)", name="ck_disputes_partner"),
        sa.UniqueConstraint("partner_id", "dispute_key", name="uq_disputes_partner_key"),
    )
    op.create_index("ix_disputes_status_opened", "disputes", ["status", "opened_at"])
    op.create_index("ix_disputes_signal", "disputes", ["signal_id"])
    op.create_index("ix_disputes_contributor", "disputes", ["contributor_id", "opened_at"])
    op.execute("ALTER TABLE disputes ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE disputes FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY {_DISPUTE_POLICY} ON disputes USING {_PARTIES} WITH CHECK {_PARTIES}")

    op.create_table(
        "decisions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("subject_type", sa.String(12), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("action", sa.String(12), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=True),
        sa.Column("actor_partner_id", sa.String(36), nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("confirms_id", sa.String(36), nullable=True),
        sa.Column("details", sa.String(2000), nullable=True),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        sa.CheckConstraint(
            "action IN ('uphold', 'confirm', 'reject', 'quarantine', 'release', 'assign', 'suspend',"
            " 'reinstate', 'grant', 'revoke')",
            name="ck_decisions_action",
        ),
        sa.CheckConstraint("subject_type IN ('dispute', 'partner', 'collection')", name="ck_decisions_subject_type"),
        sa.CheckConstraint("length(reason) > 0", name="ck_decisions_reason"),
    )
    op.create_index("ix_decisions_subject", "decisions", ["subject_type", "subject_id", "created_at"])
    appendonly.install(bind, "decisions", resignable=False)


def downgrade() -> None:
    bind = op.get_bind()
    rls.set_tenant(bind, rls.SYSTEM)
    appendonly.uninstall(bind, "decisions")
    op.drop_table("decisions")
    op.execute(f"DROP POLICY IF EXISTS {_DISPUTE_POLICY} ON disputes")
    op.drop_table("disputes")
    # Released and quarantined signals were withdrawn from the feed: the older statuses call that retracted.
    op.execute("UPDATE signals SET status = 'retracted' WHERE status IN ('quarantined', 'released')")
    op.drop_index("ix_signals_quarantined", table_name="signals")
    op.drop_constraint("ck_signals_status", "signals", type_="check")
    op.create_check_constraint("ck_signals_status", "signals", _OLD_STATUSES)
    op.execute('ALTER TABLE signals ALTER COLUMN status TYPE varchar(10) COLLATE "C"')
    # Case references were kept only as digests: they cannot come back.
    op.add_column("signals", sa.Column("case_ref", sa.String(200), nullable=True))
    op.drop_column("signals", "plain_claim")
    rls.disable(bind, "signal_claims")
    op.drop_table("signal_claims")
