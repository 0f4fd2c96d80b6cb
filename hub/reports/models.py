"""Tables of match and takedown reports: the report, its outcome history, and signals flagged for review."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime

OUTCOMES = ("pending_review", "blocked", "removed", "restricted", "no_action", "false_positive")
SURFACES = ("upload", "existing_content", "account")
MAX_REPORT_ID_LENGTH = 128

_OUTCOME_CHECK = "outcome IN (" + ", ".join(f"'{o}'" for o in OUTCOMES) + ")"
_SURFACE_CHECK = "surface IN (" + ", ".join(f"'{s}'" for s in SURFACES) + ")"


class Report(Base):
    """A partner's report of one match, under the partner's own report id.

    Everything but the `outcome*` columns is fixed when the report is made; the outcome columns cache the
    newest row of `report_outcomes` (the history, append-only) so that listing by outcome needs no join.
    """

    __tablename__ = "reports"
    __table_args__ = (
        CheckConstraint(_OUTCOME_CHECK, name="outcome"),
        CheckConstraint(_SURFACE_CHECK, name="surface"),
        CheckConstraint("distance >= 0 AND distance <= 256", name="distance"),
        CheckConstraint("seq >= 1", name="seq"),
        # Listing: a partner's reports in the order the hub received them (the cursor's order).
        Index("ix_reports_partner_received", "partner_id", "received_at", "report_id"),
        # Counting false-positive votes of one partner on a signal.
        Index("ix_reports_signal_partner", "signal_id", "partner_id"),
    )

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    # The partner's own id: what makes a resent report idempotent, and the {id} of the API.
    report_id: Mapped[str] = mapped_column(String(MAX_REPORT_ID_LENGTH), primary_key=True)
    signal_id: Mapped[str] = mapped_column(ForeignKey("signals.id"))
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"))
    # The batch seq of the collection in which the partner received the signal.
    seq: Mapped[int] = mapped_column(BigInteger)
    distance: Mapped[int] = mapped_column(SmallInteger)
    surface: Mapped[str] = mapped_column(String(20))
    # HMAC-SHA256 (hub secret) of the partner's content reference: lets the partner find its report again
    # by reference; the reference itself (a post id, never a URL or user data) is not stored.
    content_ref_digest: Mapped[str] = mapped_column(String(64))
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    automated_detection: Mapped[bool] = mapped_column(Boolean)
    # SHA-256 of the normalized item as first submitted: the same id with another body is refused.
    request_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Cache of the newest report_outcomes row.
    outcome: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    actioned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    automated_decision: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReportOutcome(Base):
    """One version of a report's outcome. Append-only: a change adds a row, nothing is overwritten."""

    __tablename__ = "report_outcomes"
    __table_args__ = (
        CheckConstraint(_OUTCOME_CHECK, name="outcome"),
        CheckConstraint("version >= 1", name="version"),
        ForeignKeyConstraint(
            ["partner_id", "report_id"],
            ["reports.partner_id", "reports.report_id"],
            name="fk_report_outcomes_report",
        ),
    )

    partner_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    report_id: Mapped[str] = mapped_column(String(MAX_REPORT_ID_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    outcome: Mapped[str] = mapped_column(String(20))
    actioned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    automated_decision: Mapped[bool] = mapped_column(Boolean)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Lowercase hex SHA-256 of the report's canonical JSON at this version, and the audit entry holding it.
    report_sha256: Mapped[str] = mapped_column(String(64))
    audit_seq: Mapped[int] = mapped_column(BigInteger)


class SignalFlag(Base):
    """Governance state of a signal that partners reported as a false positive (not partner-owned).

    `false_positive_partners` counts distinct partners that ever reported the signal `false_positive`;
    at the configured threshold the signal is flagged for governance review (`flagged_at`, audited).
    """

    __tablename__ = "signal_flags"

    signal_id: Mapped[str] = mapped_column(ForeignKey("signals.id"), primary_key=True)
    false_positive_partners: Mapped[int] = mapped_column(Integer)
    flagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The audit entry that recorded the flag.
    flag_audit_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FalsePositiveVote(Base):
    """A partner's false-positive vote cast beside a report of another outcome: a StopNCII `NotBlocked` is a
    `no_action` report and this vote (hub/compat). A `false_positive` report is a vote by itself and has no
    row here; either way a partner votes once per signal (`reports.service` reads both)."""

    __tablename__ = "false_positive_votes"

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    signal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The partner's report that carried the vote, and the audit entry of its submission.
    report_id: Mapped[str] = mapped_column(String(MAX_REPORT_ID_LENGTH))
    audit_seq: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
