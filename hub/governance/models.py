"""Governance's tables: disputes about signals and the staff decisions that settle them.

A dispute is opened by a partner that reads the signal's collection, or by the hub when enough partners
reported the signal a false positive (`source = 'flag'`, no disputing partner). Staff decide; every decision is
a new row (nothing is overwritten) with its reason, the staff user and its audit entry. The dispute's `status`
caches where its decisions have brought it.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime

MAX_NOTE = 500
MAX_ANSWER = 1000
MAX_REASON_TEXT = 1000
MAX_DISPUTE_KEY = 128


class DisputeReason(enum.StrEnum):
    """Why a partner contests a signal (a fixed list, so disputes can be counted by reason)."""

    FALSE_POSITIVE = "false_positive"  # matches content that is not the imagery the hash stands for
    NOT_IN_SCOPE = "not_in_scope"  # the imagery is not what the collection is for
    CONSENT = "consent"  # the person depicted consented to its sharing
    LOW_QUALITY = "low_quality"  # a degenerate hash that matches unrelated content
    OTHER = "other"


class DisputeStatus(enum.StrEnum):
    OPEN = "open"
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # an uphold waits for a second staff member
    QUARANTINED = "quarantined"  # withheld from the feed until released or upheld
    UPHELD = "upheld"  # the signal was retired everywhere
    REJECTED = "rejected"  # the signal stays
    RELEASED = "released"  # quarantine ended: the signal is published again


FINAL = frozenset({DisputeStatus.UPHELD, DisputeStatus.REJECTED, DisputeStatus.RELEASED})


class Action(enum.StrEnum):
    """What a staff decision does."""

    UPHOLD = "uphold"
    CONFIRM = "confirm"  # a second staff member confirms an uphold (four-eyes rule)
    REJECT = "reject"
    QUARANTINE = "quarantine"
    RELEASE = "release"
    ASSIGN = "assign"
    SUSPEND = "suspend"  # a partner
    REINSTATE = "reinstate"
    GRANT = "grant"  # collection membership
    REVOKE = "revoke"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v.value}'" for v in values) + ")"


class Dispute(Base):
    """A contested signal. Row-level security shows a row to its disputing partner and to the contributor."""

    __tablename__ = "disputes"
    __table_args__ = (
        CheckConstraint(_in("reason", DisputeReason), name="reason"),
        CheckConstraint(_in("status", DisputeStatus), name="status"),
        CheckConstraint("source IN ('partner', 'flag')", name="source"),
        CheckConstraint("(source = 'partner') = (partner_id IS NOT NULL)", name="partner"),
        # Idempotent under the partner's own id.
        UniqueConstraint("partner_id", "dispute_key", name="uq_disputes_partner_key"),
        Index("ix_disputes_status_opened", "status", "opened_at"),
        Index("ix_disputes_signal", "signal_id"),
        Index("ix_disputes_contributor", "contributor_id", "opened_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(String(10))
    # The disputing partner (None for a dispute opened by the false-positive flag) and its own id for it.
    partner_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    dispute_key: Mapped[str | None] = mapped_column(String(MAX_DISPUTE_KEY), nullable=True)
    signal_id: Mapped[str] = mapped_column(String(36))
    collection_id: Mapped[str] = mapped_column(String(36))
    contributor_id: Mapped[str] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(String(MAX_NOTE), nullable=True)
    status: Mapped[str] = mapped_column(String(24))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    open_audit_seq: Mapped[int] = mapped_column(BigInteger)
    # The contributor's one answer.
    answer: Mapped[str | None] = mapped_column(String(MAX_ANSWER), nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The staff user reviewing it.
    assignee_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Decision(Base):
    """One staff decision, append-only: about a dispute, a partner or a collection's membership."""

    __tablename__ = "decisions"
    __table_args__ = (
        CheckConstraint(_in("action", Action), name="action"),
        CheckConstraint("subject_type IN ('dispute', 'partner', 'collection')", name="subject_type"),
        CheckConstraint("length(reason) > 0", name="reason"),
        Index("ix_decisions_subject", "subject_type", "subject_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(12))
    subject_id: Mapped[str] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str] = mapped_column(String(MAX_REASON_TEXT))
    # The staff user and their partner (a governance body), or the operator's CLI (user None).
    user_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    actor_partner_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # An uphold awaiting confirmation is `proposed`; a confirm names the uphold it confirms.
    state: Mapped[str] = mapped_column(String(10))
    confirms_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Action details (e.g. the partner granted, the signal re-published): canonical JSON, no raw hashes.
    details: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    audit_seq: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
